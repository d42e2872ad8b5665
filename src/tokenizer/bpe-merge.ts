// The BPE merge loop shared by all tokenizers here: symbols in a doubly linked list and candidate
// pairs in a binary heap (best rank first, ties to the leftmost pair, as SentencePiece and HF
// tokenizers both do), so a merge costs O(log n) and a few KB of text encode in well under 10 ms.

/** Rank of merging `left`+`right` (lower merges first), or undefined when they cannot merge. */
export type PairRank = (left: string, right: string) => number | undefined;

interface Candidate {
  rank: number;
  left: number; // index of the left symbol (its original position; ties go to the smaller)
  right: number;
  l: string; // the symbols when the candidate was made; stale candidates are skipped
  r: string;
}

function better(a: Candidate, b: Candidate): boolean {
  return a.rank < b.rank || (a.rank === b.rank && a.left < b.left);
}

class CandidateHeap {
  private items: Candidate[] = [];

  get size(): number {
    return this.items.length;
  }

  push(c: Candidate): void {
    const h = this.items;
    let i = h.length;
    h.push(c);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(c, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = c;
  }

  pop(): Candidate {
    const h = this.items;
    const top = h[0];
    const last = h.pop() as Candidate;
    const n = h.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && better(h[r], h[l]) ? r : l;
        if (!better(h[c], last)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/**
 * Repeatedly merges the best-ranked adjacent pair until none can merge; returns the final
 * symbols in order. `frozen[i]` symbols never merge (SentencePiece user-defined pieces);
 * `onMerge` sees every merge made (SentencePiece uses it to undo merges into unused pieces).
 */
export function bpeMerge(
  symbols: readonly string[],
  rankOf: PairRank,
  frozen?: readonly boolean[],
  onMerge?: (merged: string, left: string, right: string) => void,
): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const sym = symbols.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new CandidateHeap();
  const consider = (a: number, b: number): void => {
    if (a < 0 || b < 0 || (frozen !== undefined && (frozen[a] || frozen[b]))) return;
    const rank = rankOf(sym[a], sym[b]);
    if (rank !== undefined) heap.push({ rank, left: a, right: b, l: sym[a], r: sym[b] });
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);

  while (heap.size > 0) {
    const c = heap.pop();
    const { left, right } = c;
    if (!alive[left] || next[left] !== right || sym[left] !== c.l || sym[right] !== c.r) continue;
    const merged = c.l + c.r;
    onMerge?.(merged, c.l, c.r);
    sym[left] = merged;
    alive[right] = 0;
    const after = next[right];
    next[left] = after;
    if (after >= 0) prev[after] = left;
    consider(prev[left], left);
    consider(left, after);
  }

  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}
