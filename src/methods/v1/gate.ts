// Gate conventions: how a stored gate parameter becomes the per-head factor on the prompt branch.
// A typed rule table, so adding a convention without its rules is a compile error.

export type GateMode = 'tanh-per-head' | 'raw-per-head' | 'raw-per-layer';

interface GateRule {
  perHead: boolean; // one parameter per head (else one per layer, broadcast to all heads)
  describe: string; // who uses it
  /** effective gate from a parameter value */
  apply(g: number): number;
  /** d effective / d parameter at parameter value g */
  grad(g: number): number;
}

export const GATE_RULES: Record<GateMode, GateRule> = {
  'tanh-per-head': {
    perHead: true,
    describe: 'tanh(gate) per head (official LLaMA-Adapter v1 training code; default)',
    apply: (g) => Math.tanh(g),
    grad: (g) => 1 - Math.tanh(g) ** 2,
  },
  'raw-per-head': {
    perHead: true,
    describe: 'gate used as-is, per head (official v1 inference script, litgpt)',
    apply: (g) => g,
    grad: () => 1,
  },
  'raw-per-layer': {
    perHead: false,
    describe: 'gate used as-is, one scalar per layer (Hugging Face PEFT adaption_prompt)',
    apply: (g) => g,
    grad: () => 1,
  },
};

export function isGateMode(s: string): s is GateMode {
  return Object.hasOwn(GATE_RULES, s);
}

/** Number of gate parameters per adapted layer. */
export function gateSize(mode: GateMode, nHeads: number): number {
  return GATE_RULES[mode].perHead ? nHeads : 1;
}

/** Fill eff (nHeads) with the effective per-head gates of a layer's gate parameters. */
export function effectiveGates(mode: GateMode, params: Float32Array, eff: Float32Array): void {
  const r = GATE_RULES[mode];
  for (let h = 0; h < eff.length; h++) eff[h] = r.apply(params[r.perHead ? h : 0]);
}

/** Chain rule: out (params) = d loss / d params from deff (nHeads) = d loss / d effective gates. */
export function gateParamGrad(mode: GateMode, params: Float32Array, deff: Float32Array, out: Float32Array): void {
  const r = GATE_RULES[mode];
  if (r.perHead) for (let h = 0; h < deff.length; h++) out[h] = deff[h] * r.grad(params[h]);
  else {
    let s = 0;
    for (let h = 0; h < deff.length; h++) s += deff[h];
    out[0] = s * r.grad(params[0]);
  }
}
