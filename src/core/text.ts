// Text files as editors write them: a UTF-8 byte-order mark (Windows editors) and CRLF line
// endings must read as the same content as plain LF text.

/** `text` without a leading U+FEFF byte-order mark. */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** The lines of `text` (BOM dropped, LF or CRLF endings), numbered from 1. */
export function textLines(text: string): { line: number; text: string }[] {
  return stripBom(text)
    .split('\n')
    .map((t, i) => ({ line: i + 1, text: t.endsWith('\r') ? t.slice(0, -1) : t }));
}
