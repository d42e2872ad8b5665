// Checkpoint loading entry point: detects the format of a path and returns canonical weights.
// (Implementation of the format readers lives beside this file, one format per file.)
export {};
