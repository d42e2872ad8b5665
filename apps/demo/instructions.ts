// Instruction data for the demo, built honestly from the base model's own stories: each story is
// paired with an instruction it satisfies ("Write a short story about Lily and a ball." where
// Lily is the story's main named character and ball the object it mentions most), and a set of
// (name, object) combinations is held out: no training story mentions both words of a held-out
// combination, while each of its name and object does appear in training. Optional augmentation
// reuses each story with its character renamed and its object replaced (augmentSwaps).

import { check } from '../../src/core/errors.js';
import { Rng } from '../../src/core/rng.js';

/**
 * Character names the tinystories-656k model writes (counted over 512 of its stories at
 * temperature 1.0: Tim, Lily, Tom, Sue, Max, Spot, Mia, Sam, Amy, Lucy, Bob, Ben, ... appear
 * in 2-35% of stories). Matched case-sensitively as whole words, so "Max" is not "max".
 */
export const NAMES: readonly string[] = [
  'Tim',
  'Lily',
  'Tom',
  'Sue',
  'Max',
  'Spot',
  'Mia',
  'Sam',
  'Amy',
  'Lucy',
  'Bob',
  'Ben',
  'Sally',
  'Anna',
  'Jack',
  'Mimi',
  'Sara',
  'Timmy',
  'Emma',
  'Jane',
  'John',
  'Leo',
  'Billy',
  'Sarah',
  'Jill',
  'Kitty',
  'Bobo',
  'Zoe',
  'Joe',
  'Molly',
  'Lila',
  'Mark',
  'Fred',
  'Daisy',
  'Buddy',
];

/**
 * Concrete things and animals a story can be "about" (case-insensitive whole words, plural
 * allowed). Not "toy": the model mostly uses it as a modifier ("a toy car").
 */
export const OBJECTS: readonly string[] = [
  'ball',
  'dog',
  'cat',
  'bird',
  'tree',
  'box',
  'car',
  'fish',
  'mouse',
  'rock',
  'bear',
  'hat',
  'cake',
  'flower',
  'kite',
  'boat',
  'apple',
  'book',
  'bike',
  'doll',
  'bug',
  'frog',
  'duck',
  'bunny',
  'truck',
  'balloon',
  'cookie',
  'ant',
  'owl',
  'monkey',
  'lion',
  'fox',
  'pig',
  'cow',
  'horse',
  'bee',
  'train',
  'shoe',
  'cup',
  'drum',
  'bag',
];

/**
 * The names and objects that augmentation swaps in: the twelve names the model writes most
 * (with the gender its stories give them, so "a little girl named Lily" stays a girl) and
 * common objects that take "a" (so "a ball" stays grammatical after a swap).
 */
export const SWAP_NAMES: Readonly<Record<string, 'f' | 'm'>> = {
  Lily: 'f',
  Sue: 'f',
  Mia: 'f',
  Amy: 'f',
  Lucy: 'f',
  Anna: 'f',
  Tim: 'm',
  Tom: 'm',
  Max: 'm',
  Sam: 'm',
  Ben: 'm',
  Jack: 'm',
};
export const SWAP_OBJECTS: Readonly<Record<string, 'animal' | 'thing'>> = {
  dog: 'animal',
  cat: 'animal',
  bird: 'animal',
  fish: 'animal',
  bug: 'animal',
  frog: 'animal',
  duck: 'animal',
  bear: 'animal',
  ball: 'thing',
  box: 'thing',
  car: 'thing',
  kite: 'thing',
  boat: 'thing',
  book: 'thing',
  doll: 'thing',
  cake: 'thing',
  hat: 'thing',
  tree: 'thing',
};

/** A (name, object) combination. */
export interface Combo {
  name: string;
  object: string;
}

/** One story and the instruction it satisfies. */
export interface StoryInstruction extends Combo {
  instruction: string;
  story: string;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const nameRe = new Map<string, RegExp>();
const objectRe = new Map<string, RegExp>();

/** Occurrences of `name` as a whole, capitalised word (Tim's counts; Timmy does not). */
export function countName(text: string, name: string): number {
  let re = nameRe.get(name);
  if (!re) nameRe.set(name, (re = new RegExp(`(?<![A-Za-z])${escapeRe(name)}(?![A-Za-z])`, 'g')));
  return text.match(re)?.length ?? 0;
}

/** Occurrences of `object` as a whole word, any case, singular or plural (ball, Balls). */
export function countObject(text: string, object: string): number {
  let re = objectRe.get(object);
  if (!re) objectRe.set(object, (re = new RegExp(`(?<![A-Za-z])${escapeRe(object)}(?:s|es)?(?![A-Za-z])`, 'gi')));
  return text.match(re)?.length ?? 0;
}

export function mentionsName(text: string, name: string): boolean {
  return countName(text, name) > 0;
}

export function mentionsObject(text: string, object: string): boolean {
  return countObject(text, object) > 0;
}

/** The instruction text for a combination (the only template the demo uses). */
export function instructionFor(c: Combo): string {
  const article = /^[aeiou]/i.test(c.object) ? 'an' : 'a';
  return `Write a short story about ${c.name} and ${article} ${c.object}.`;
}

/** A story title for a combination: a prompt the base model continues more naturally (reference only). */
export function titleFor(c: Combo): string {
  const article = /^[aeiou]/i.test(c.object) ? 'an' : 'a';
  return `A story about ${c.name} and ${article} ${c.object}.`;
}

/** The most frequent item (ties: the one that occurs first in the text), or null. */
function mostFrequent(text: string, items: readonly string[], count: (t: string, w: string) => number, first: (t: string, w: string) => number): string | null {
  let best: string | null = null;
  let bestN = 0;
  let bestAt = Infinity;
  for (const w of items) {
    const n = count(text, w);
    if (n === 0) continue;
    const at = first(text, w);
    if (n > bestN || (n === bestN && at < bestAt)) {
      best = w;
      bestN = n;
      bestAt = at;
    }
  }
  return best;
}

function firstName(text: string, name: string): number {
  return text.search(new RegExp(`(?<![A-Za-z])${escapeRe(name)}(?![A-Za-z])`));
}

function firstObject(text: string, object: string): number {
  return text.search(new RegExp(`(?<![A-Za-z])${escapeRe(object)}(?:s|es)?(?![A-Za-z])`, 'i'));
}

/**
 * The instruction a story satisfies: its most frequent known name and its most frequent known
 * object; null when the story has no known name or no known object.
 */
export function extractInstruction(story: string): StoryInstruction | null {
  const name = mostFrequent(story, NAMES, countName, firstName);
  const object = mostFrequent(story, OBJECTS, countObject, firstObject);
  if (!name || !object) return null;
  return { name, object, instruction: instructionFor({ name, object }), story };
}

/** True when the text mentions both the name and the object of the combination. */
export function satisfies(text: string, c: Combo): boolean {
  return mentionsName(text, c.name) && mentionsObject(text, c.object);
}

/** Replace every whole-word occurrence of a name (case-sensitive). */
export function replaceName(text: string, from: string, to: string): string {
  return text.replace(new RegExp(`(?<![A-Za-z])${escapeRe(from)}(?![A-Za-z])`, 'g'), to);
}

/** Replace every whole-word occurrence of an object, any case, keeping capitalisation and plural. */
export function replaceObject(text: string, from: string, to: string): string {
  return text.replace(new RegExp(`(?<![A-Za-z])${escapeRe(from)}(s|es)?(?![A-Za-z])`, 'gi'), (m: string, pl: string | undefined) => {
    const w = m[0] === m[0].toUpperCase() ? to[0].toUpperCase() + to.slice(1) : to;
    return w + (pl ? (/(x|s|sh|ch)$/.test(to) ? 'es' : 's') : '');
  });
}

/**
 * Name/object augmentation: each story is used `copies` times with its main character renamed
 * (to another name of the same gender from SWAP_NAMES that the story does not already use) and
 * its main object replaced (by another SWAP_OBJECTS object of the same kind, animal or thing,
 * that it does not mention; objects outside SWAP_OBJECTS stay). The
 * base model wrote every other word. Without this the adapter learns the names the model writes
 * most often (Lily, Tim) instead of reading them from the instruction. copies = 0: originals only.
 */
export function augmentSwaps(items: readonly StoryInstruction[], copies: number, seed: number): StoryInstruction[] {
  const rng = new Rng((seed * 2246822519 + 3) >>> 0);
  const out: StoryInstruction[] = [];
  const pick = <T>(xs: readonly T[]): T | undefined => (xs.length ? xs[rng.int(xs.length)] : undefined);
  for (const it of items) {
    if (copies === 0) {
      out.push(it);
      continue;
    }
    const gender = SWAP_NAMES[it.name];
    const names = Object.keys(SWAP_NAMES).filter((n) => (gender === undefined || SWAP_NAMES[n] === gender) && !mentionsName(it.story, n));
    const kind = SWAP_OBJECTS[it.object];
    const objects = Object.keys(SWAP_OBJECTS).filter((x) => kind !== undefined && SWAP_OBJECTS[x] === kind && !mentionsObject(it.story, x));
    for (let k = 0; k < copies; k++) {
      const name = pick(names) ?? it.name;
      const object = pick(objects) ?? it.object;
      const story = replaceObject(replaceName(it.story, it.name, name), it.object, object);
      const c = { name, object };
      if (satisfies(story, c)) out.push({ ...c, instruction: instructionFor(c), story });
    }
  }
  return out;
}

export interface SplitOptions {
  heldoutCombos: number; // how many (name, object) combinations to hold out
  seed: number;
  minCount?: number; // a name/object qualifies when it leads at least this many stories (default 3)
  names?: readonly string[]; // candidate names for held-out combinations (default NAMES)
  objects?: readonly string[]; // candidate objects (default OBJECTS)
  minTrain?: number; // each held-out name and object must still lead this many training stories (default 2)
  maxDropFraction?: number; // at most this fraction of stories may be removed from training (default 0.2)
}

export interface InstructionSplit {
  train: StoryInstruction[]; // no story mentions both words of any held-out combination
  heldoutStories: StoryInstruction[]; // stories whose own instruction is a held-out combination
  heldout: Combo[]; // the held-out combinations (evaluation instructions are built from these)
  dropped: number; // stories removed from training only because they mention a held-out pair in passing
}

/**
 * Choose held-out combinations from the grid of frequent candidate names x objects (seeded
 * shuffle, greedy): a combination is taken when, after removing every story that mentions both
 * its name and its object, the name and the object of every held-out combination still lead at
 * least minTrain training stories each, the total removed stays within maxDropFraction, and no
 * name or object is in more than about twice its share of the held-out combinations.
 */
export function splitHeldout(items: readonly StoryInstruction[], o: SplitOptions): InstructionSplit {
  const minCount = o.minCount ?? 3;
  const minTrain = o.minTrain ?? 2;
  const maxDrop = Math.floor(items.length * (o.maxDropFraction ?? 0.2));
  const nameN = new Map<string, number>();
  const objN = new Map<string, number>();
  for (const it of items) {
    nameN.set(it.name, (nameN.get(it.name) ?? 0) + 1);
    objN.set(it.object, (objN.get(it.object) ?? 0) + 1);
  }
  const names = (o.names ?? NAMES).filter((n) => (nameN.get(n) ?? 0) >= minCount);
  const objects = (o.objects ?? OBJECTS).filter((x) => (objN.get(x) ?? 0) >= minCount);
  check(
    names.length >= 2 && objects.length >= 2,
    `only ${names.length} names and ${objects.length} objects lead at least ${minCount} stories each: sample more stories (--stories)`,
  );
  const grid: Combo[] = [];
  for (const name of names) for (const object of objects) grid.push({ name, object });
  new Rng((o.seed * 2654435761 + 17) >>> 0).shuffle(grid);

  const removed = new Set<number>(); // indices of stories out of training
  const lead = (pick: (it: StoryInstruction) => string, w: string): number => items.reduce((n, it, i) => n + (!removed.has(i) && pick(it) === w ? 1 : 0), 0);
  const heldout: Combo[] = [];
  // spread the held-out combinations over names and objects (no name or object dominates)
  const perName = Math.max(2, Math.ceil((2 * o.heldoutCombos) / names.length));
  const perObject = Math.max(2, Math.ceil((2 * o.heldoutCombos) / objects.length));
  for (const c of grid) {
    if (heldout.length >= o.heldoutCombos) break;
    if (heldout.filter((h) => h.name === c.name).length >= perName || heldout.filter((h) => h.object === c.object).length >= perObject) continue;
    const hit = items.map((it, i) => (!removed.has(i) && satisfies(it.story, c) ? i : -1)).filter((i) => i >= 0);
    if (removed.size + hit.length > maxDrop) continue;
    for (const i of hit) removed.add(i);
    const all = [...heldout, c];
    if (all.some((h) => lead((it) => it.name, h.name) < minTrain || lead((it) => it.object, h.object) < minTrain)) {
      for (const i of hit) removed.delete(i);
      continue;
    }
    heldout.push(c);
  }
  check(heldout.length > 0, 'could not hold out any name/object combination: sample more stories (--stories)');
  const isHeld = (c: Combo): boolean => heldout.some((h) => h.name === c.name && h.object === c.object);
  const train = items.filter((_, i) => !removed.has(i));
  const heldoutStories = items.filter((it, i) => removed.has(i) && isHeld(it));
  return { train, heldoutStories, heldout, dropped: removed.size - heldoutStories.length };
}
