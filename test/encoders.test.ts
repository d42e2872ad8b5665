// ViT and RoBERTa with adaption prompts against the golden fixtures of the independent PyTorch
// reference (../shared/fixtures vit-tiny-prompts and roberta-tiny-prompts, made by
// reference/refencoders.py from HF's math), on every backend: every hidden state, last_hidden_state,
// the checkpoint heads' outputs (ViT logits, RoBERTa start/end logits), the losses, the prompt
// keys/values, and d loss / d prompts and gates for the three prompt variants (tanh and raw gates,
// the vpt joint softmax), within the fixtures' tolerances (1e-4 absolute; gradients 1e-4 relative to
// the tensor's largest value). Zero gates give the base outputs bit for bit and exactly zero prompt
// gradients. Also: RoBERTa's position ids with the padding offset, a padded row equal to the same
// row unpadded, the QA loss with an out-of-range end position, other checkpoint layouts (no key
// prefix, no heads), and the head gradients against finite differences.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend } from '../src/backend/backend.js';
import { readSafetensors, writeSafetensors } from '../src/core/safetensors.js';
import { loadEncoder } from '../src/model/encoders/load.js';
import type { RobertaModel } from '../src/model/encoders/roberta.js';
import type { VitModel } from '../src/model/encoders/vit.js';
import { zerosLike } from '../src/model/method.js';
import { RobertaBackbone, VitBackbone } from '../src/methods/prompts/backbones.js';
import type { PromptMode } from '../src/methods/prompts/prompt-tuning.js';
import { createTaskMethod, type TaskMethod, taskStep } from '../src/methods/prompts/task.js';
import { backendsUnderTest, getBackend } from './backends.js';
import { fixtures, maxAbs, maxAbsDiff } from './helpers.js';

const TOL = 1e-4;
const vitDir = path.join(fixtures, 'vit-tiny');
const robertaDir = path.join(fixtures, 'roberta-tiny');
const vfx = readSafetensors(path.join(fixtures, 'vit-tiny-prompts.safetensors'));
const rfx = readSafetensors(path.join(fixtures, 'roberta-tiny-prompts.safetensors'));

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL): void {
  const d = maxAbsDiff(got, want);
  assert.ok(d <= tol, `${what}: max |diff| ${d.toExponential(3)} > ${tol}`);
}

function closeGrad(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  close(got, want, what, TOL * Math.max(maxAbs(want), 1e-30));
}

/** Fixture (L, H, K, hd) prompt keys -> ours per layer (K, H*hd). */
function perLayerKv(fx: Float32Array, L: number, H: number, K: number, hd: number): Float32Array[] {
  return Array.from({ length: L }, (_, j) => {
    const out = new Float32Array(K * H * hd);
    for (let h = 0; h < H; h++) for (let k = 0; k < K; k++) for (let i = 0; i < hd; i++) out[k * H * hd + h * hd + i] = fx[((j * H + h) * K + k) * hd + i];
    return out;
  });
}

/** A method with the fixture's prompts and gates (mode), the checkpoint's head. */
function fixtureMethod(
  bb: VitBackbone | RobertaBackbone,
  fx: typeof vfx,
  mode: PromptMode,
  task: 'image-classification' | 'question-answering',
  head: Map<string, Float32Array>,
  zeroGates = false,
): TaskMethod {
  const [L, K] = fx.info('prompts').shape;
  const labels = task === 'image-classification' ? ['0', '1', '2', '3', '4'] : [];
  const m = createTaskMethod(bb, { task, labels, prompts: { mode, promptLength: K, adapterLayers: L }, headFrom: head });
  const N = bb.view.attnShape.layers,
    C = bb.width;
  const P = fx.tensorF32('prompts'),
    G = fx.tensorF32('gates');
  const t = m.tensors();
  for (let j = 0; j < L; j++) {
    t.get(`layers.${N - L + j}.adaption_prompt`)!.set(P.subarray(j * K * C, (j + 1) * K * C));
    const g = t.get(`layers.${N - L + j}.adaption_gate`);
    if (g) g.set(zeroGates ? new Float32Array(g.length) : G.subarray(j * g.length, (j + 1) * g.length));
  }
  m.invalidate();
  return m;
}

/** Concatenate per-layer grads of the adapted layers (L, ...). */
function gradsOf(m: TaskMethod, grads: Map<string, Float32Array>, what: 'prompt' | 'gate'): Float32Array {
  const parts = [...grads].filter(([n]) => n.endsWith(`adaption_${what}`)).map(([, g]) => g);
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  assert.ok(m.isParam([...grads.keys()][0]));
  return out;
}

function checkHidden(hidden: Float32Array[], fx: typeof vfx, name: string, what: string): void {
  const want = fx.tensorF32(name);
  const per = hidden[0].length;
  assert.equal(hidden.length * per, want.length, `${what}: hidden state count`);
  hidden.forEach((h, i) => close(h, want.subarray(i * per, (i + 1) * per), `${what} hidden[${i}]`));
}

for (const id of backendsUnderTest()) {
  const be: Backend = getBackend(id);

  describe(`ViT with adaption prompts matches refencoders.py [${id}]`, () => {
    const vit = loadEncoder(vitDir, be) as VitModel;
    const bb = new VitBackbone(vit);
    const pixels = vfx.tensorF32('pixels');
    const labels = vfx.tensorInt32('labels');
    const head = new Map([
      ['classifier.weight', vit.classifier!.w.data as Float32Array],
      ['classifier.bias', vit.classifier!.b],
    ]);

    it('base model: hidden states, last_hidden_state, classifier logits, loss', () => {
      assert.equal(vit.tokens, 17);
      const o = vit.forward(pixels, 2, { keep: true });
      checkHidden(o.hidden!, vfx, 'base_hidden_states', 'base');
      close(o.last, vfx.tensorF32('base_last_hidden_state'), 'base last_hidden_state');
      const m = createTaskMethod(bb, { task: 'image-classification', labels: ['0', '1', '2', '3', '4'], prompts: null, headFrom: head });
      const r = taskStep(bb, m, { pixels, B: 2 }, { labels }, null);
      close(r.out, vfx.tensorF32('base_logits'), 'base logits');
      close([r.loss], vfx.tensorF32('base_loss'), 'base loss');
    });

    for (const mode of ['tanh', 'raw', 'vpt'] as const)
      it(`${mode}: prompt keys/values, hidden states, logits, loss, d loss / d prompts${mode === 'vpt' ? '' : ' and gates'}`, () => {
        const m = fixtureMethod(bb, vfx, mode, 'image-classification', head);
        const [L, K] = vfx.info('prompts').shape;
        const H = vit.config.heads,
          hd = vit.config.hidden / H,
          N = vit.config.layers;
        perLayerKv(vfx.tensorF32('prompt_keys'), L, H, K, hd).forEach((want, j) => close(m.promptLayer(N - L + j)!.pk, want, `prompt keys ${j}`));
        perLayerKv(vfx.tensorF32('prompt_values'), L, H, K, hd).forEach((want, j) => close(m.promptLayer(N - L + j)!.pv, want, `prompt values ${j}`));
        const o = vit.forward(pixels, 2, { source: m.source, keep: true });
        checkHidden(o.hidden!, vfx, `${mode}_hidden_states`, mode);
        close(o.last, vfx.tensorF32(`${mode}_last_hidden_state`), `${mode} last_hidden_state`);
        const grads = zerosLike(m);
        const r = taskStep(bb, m, { pixels, B: 2 }, { labels }, grads);
        close(r.out, vfx.tensorF32(`${mode}_logits`), `${mode} logits`);
        close([r.loss], vfx.tensorF32(`${mode}_loss`), `${mode} loss`);
        closeGrad(gradsOf(m, grads, 'prompt'), vfx.tensorF32(`${mode}_grad_prompts`), `${mode} d prompts`);
        if (mode !== 'vpt') closeGrad(gradsOf(m, grads, 'gate'), vfx.tensorF32(`${mode}_grad_gates`), `${mode} d gates`);
        else assert.ok(![...grads.keys()].some((n) => n.endsWith('gate')), 'vpt has no gates');
      });

    it('zero gates (tanh and raw): the base model bit for bit, d loss / d prompts exactly 0, d gates = the zero-init gradient', () => {
      const base = vit.forward(pixels, 2, { keep: true });
      for (const mode of ['tanh', 'raw'] as const) {
        const m = fixtureMethod(bb, vfx, mode, 'image-classification', head, true);
        const o = vit.forward(pixels, 2, { source: m.source, keep: true });
        assert.deepEqual(o.last, base.last, `${mode}: last_hidden_state bit for bit`);
        o.hidden!.forEach((h, i) => assert.deepEqual(h, base.hidden![i], `${mode}: hidden[${i}] bit for bit`));
        const grads = zerosLike(m);
        taskStep(bb, m, { pixels, B: 2 }, { labels }, grads);
        assert.equal(maxAbs(gradsOf(m, grads, 'prompt')), 0, `${mode}: d prompts at zero gates`);
        closeGrad(gradsOf(m, grads, 'gate'), vfx.tensorF32('zero_gates_grad_gates'), `${mode}: d gates at zero gates`);
      }
    });
  });

  describe(`RoBERTa with adaption prompts matches refencoders.py [${id}]`, () => {
    const rob = loadEncoder(robertaDir, be) as RobertaModel;
    const bb = new RobertaBackbone(rob, 'all');
    const [B, T] = rfx.info('input_ids').shape;
    const x = { ids: rfx.tensorInt32('input_ids'), B, T, mask: rfx.tensorInt32('attention_mask') };
    const spans = { starts: rfx.tensorInt32('start_positions'), ends: rfx.tensorInt32('end_positions'), B, T };
    const head = new Map([
      ['qa_outputs.weight', rob.qaOutputs!.w.data as Float32Array],
      ['qa_outputs.bias', rob.qaOutputs!.b],
    ]);
    const split = (out: Float32Array, col: number) => Float32Array.from({ length: B * T }, (_, i) => out[i * 2 + col]);

    it('position ids with the padding offset; base hidden states, start/end logits, QA loss (end out of range: clamped and ignored)', () => {
      assert.deepEqual(rob.positionIds(x.ids, B, T), rfx.tensorInt32('position_ids'));
      const o = rob.forward(x, { keep: true });
      checkHidden(o.hidden!, rfx, 'base_hidden_states', 'base');
      close(o.last, rfx.tensorF32('base_last_hidden_state'), 'base last_hidden_state');
      const m = createTaskMethod(bb, { task: 'question-answering', prompts: null, headFrom: head });
      const r = taskStep(bb, m, x, spans, null);
      close(split(r.out, 0), rfx.tensorF32('base_start_logits'), 'base start logits');
      close(split(r.out, 1), rfx.tensorF32('base_end_logits'), 'base end logits');
      close([r.loss], rfx.tensorF32('base_loss'), 'base loss');
      const r2 = taskStep(bb, m, x, { ...spans, ends: Int32Array.from([6, 99]) }, null);
      close([r2.loss], rfx.tensorF32('base_loss_end_out_of_range'), 'loss with end position 99');
    });

    for (const mode of ['tanh', 'raw', 'vpt'] as const)
      it(`${mode}: prompt keys/values, hidden states (padding mask never hides prompts), start/end logits, loss, gradients`, () => {
        const m = fixtureMethod(bb, rfx, mode, 'question-answering', head);
        const [L, K] = rfx.info('prompts').shape;
        const H = rob.config.heads,
          hd = rob.config.hidden / H,
          N = rob.config.layers;
        perLayerKv(rfx.tensorF32('prompt_keys'), L, H, K, hd).forEach((want, j) => close(m.promptLayer(N - L + j)!.pk, want, `prompt keys ${j}`));
        perLayerKv(rfx.tensorF32('prompt_values'), L, H, K, hd).forEach((want, j) => close(m.promptLayer(N - L + j)!.pv, want, `prompt values ${j}`));
        const o = rob.forward(x, { source: m.source, keep: true });
        checkHidden(o.hidden!, rfx, `${mode}_hidden_states`, mode);
        const grads = zerosLike(m);
        const r = taskStep(bb, m, x, spans, grads);
        close(split(r.out, 0), rfx.tensorF32(`${mode}_start_logits`), `${mode} start logits`);
        close(split(r.out, 1), rfx.tensorF32(`${mode}_end_logits`), `${mode} end logits`);
        close([r.loss], rfx.tensorF32(`${mode}_loss`), `${mode} loss`);
        closeGrad(gradsOf(m, grads, 'prompt'), rfx.tensorF32(`${mode}_grad_prompts`), `${mode} d prompts`);
        if (mode !== 'vpt') closeGrad(gradsOf(m, grads, 'gate'), rfx.tensorF32(`${mode}_grad_gates`), `${mode} d gates`);
      });

    it('zero gates: base outputs bit for bit, zero prompt gradients; a padded row equals the same row unpadded', () => {
      const base = rob.forward(x, { keep: true });
      for (const mode of ['tanh', 'raw'] as const) {
        const m = fixtureMethod(bb, rfx, mode, 'question-answering', head, true);
        assert.deepEqual(rob.forward(x, { source: m.source }).last, base.last, `${mode}: bit for bit`);
        const grads = zerosLike(m);
        taskStep(bb, m, x, spans, grads);
        assert.equal(maxAbs(gradsOf(m, grads, 'prompt')), 0);
        closeGrad(gradsOf(m, grads, 'gate'), rfx.tensorF32('zero_gates_grad_gates'), `${mode}: d gates at zero gates`);
      }
      // row 1 has 11 real tokens: alone and unpadded it gives the same states at those positions, with prompts too
      const n = x.mask.subarray(T, 2 * T).reduce((a, v) => a + v, 0);
      const m = fixtureMethod(bb, rfx, 'vpt', 'question-answering', head);
      const padded = rob.forward(x, { source: m.source }).last;
      const alone = rob.forward({ ids: x.ids.slice(T, T + n), B: 1, T: n }, { source: m.source }).last;
      const C = rob.config.hidden;
      close(alone, padded.subarray(T * C, (T + n) * C), 'padded row vs unpadded', 1e-5);
    });
  });
}

describe('encoder checkpoints in other layouts', () => {
  const be = getBackend('ts');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'la-enc-'));

  /** Rewrite a fixture directory with its keys renamed (and some dropped). */
  function rewrite(src: string, dst: string, rename: (k: string) => string | null): void {
    fs.mkdirSync(dst, { recursive: true });
    fs.copyFileSync(path.join(src, 'config.json'), path.join(dst, 'config.json'));
    const f = readSafetensors(path.join(src, 'model.safetensors'));
    const tensors = f
      .names()
      .map((n) => ({ n, to: rename(n) }))
      .filter((e): e is { n: string; to: string } => e.to !== null)
      .map(({ n, to }) => ({ name: to, dtype: 'F32' as const, shape: f.info(n).shape, data: f.tensorF32(n) }));
    writeSafetensors(path.join(dst, 'model.safetensors'), tensors);
  }

  it('a bare ViTModel / RobertaModel (no prefix, no head) gives the same last_hidden_state; missing heads are null', () => {
    const vit = loadEncoder(vitDir, be) as VitModel;
    rewrite(vitDir, path.join(tmp, 'vit'), (k) => (k.startsWith('classifier.') ? null : k.replace(/^vit\./, '')));
    const bare = loadEncoder(path.join(tmp, 'vit'), be) as VitModel;
    assert.equal(bare.classifier, null);
    const px = vfx.tensorF32('pixels');
    assert.deepEqual(bare.forward(px, 2).last, vit.forward(px, 2).last);
    const rob = loadEncoder(robertaDir, be) as RobertaModel;
    rewrite(robertaDir, path.join(tmp, 'rob'), (k) => (k.startsWith('qa_outputs.') ? null : k.replace(/^roberta\./, '')));
    const rbare = loadEncoder(path.join(tmp, 'rob'), be) as RobertaModel;
    assert.equal(rbare.qaOutputs, null);
    const x = { ids: rfx.tensorInt32('input_ids'), B: 2, T: 16, mask: rfx.tensorInt32('attention_mask') };
    assert.deepEqual(rbare.forward(x).last, rob.forward(x).last);
    assert.notEqual(bare.fingerprint, '');
  });

  it('RobertaForSequenceClassification: classifier.dense + tanh + classifier.out_proj on <s>, read from the file and used as the task head', () => {
    const f = readSafetensors(path.join(robertaDir, 'model.safetensors'));
    const C = 48,
      nl = 3;
    const dense = Float32Array.from({ length: C * C }, (_, i) => Math.sin(i) * 0.2),
      outP = Float32Array.from({ length: nl * C }, (_, i) => Math.cos(i) * 0.3);
    const extra = [
      { name: 'classifier.dense.weight', dtype: 'F32' as const, shape: [C, C], data: dense },
      { name: 'classifier.dense.bias', dtype: 'F32' as const, shape: [C], data: new Float32Array(C).fill(0.1) },
      { name: 'classifier.out_proj.weight', dtype: 'F32' as const, shape: [nl, C], data: outP },
      { name: 'classifier.out_proj.bias', dtype: 'F32' as const, shape: [nl], data: Float32Array.from([0.5, -0.5, 0]) },
    ];
    const dir = path.join(tmp, 'rob-seqcls');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(robertaDir, 'config.json'), path.join(dir, 'config.json'));
    const kept = f
      .names()
      .filter((n) => !n.startsWith('qa_outputs.'))
      .map((n) => ({ name: n, dtype: 'F32' as const, shape: f.info(n).shape, data: f.tensorF32(n) }));
    writeSafetensors(path.join(dir, 'model.safetensors'), [...kept, ...extra]);
    const rob = loadEncoder(dir, be) as RobertaModel;
    assert.ok(rob.classifier && !rob.qaOutputs);
    const bb = new RobertaBackbone(rob, 'first');
    const headFrom = new Map(extra.map((t) => [t.name, t.data]));
    const m = createTaskMethod(bb, { task: 'text-classification', labels: ['a', 'b', 'c'], prompts: null, headFrom });
    assert.equal(m.head.kind, 'roberta-classifier');
    const x = { ids: rfx.tensorInt32('input_ids'), B: 2, T: 16, mask: rfx.tensorInt32('attention_mask') };
    const r = taskStep(bb, m, x, { labels: Int32Array.from([0, 2]) }, null);
    const last = rob.forward(x).last;
    for (let b = 0; b < 2; b++) {
      const z = Array.from({ length: C }, (_, o) =>
        Math.tanh(0.1 + last.subarray(b * 16 * C, b * 16 * C + C).reduce((a, v, i) => a + v * dense[o * C + i], 0)),
      );
      for (let k = 0; k < nl; k++) {
        const want = [0.5, -0.5, 0][k] + z.reduce((a, v, i) => a + v * outP[k * C + i], 0);
        assert.ok(Math.abs(r.out[b * nl + k] - want) < 1e-5, `logit [${b}, ${k}]: ${r.out[b * nl + k]} vs ${want}`);
      }
    }
  });

  it('refuses what it cannot run, naming the file: a missing tensor, a wrong shape, an unknown activation, a vocabulary overflow', () => {
    rewrite(vitDir, path.join(tmp, 'vit-missing'), (k) => (k.endsWith('layer.2.output.dense.bias') ? null : k));
    assert.throws(() => loadEncoder(path.join(tmp, 'vit-missing'), be), /model\.safetensors: missing tensor "vit\.encoder\.layer\.2\.output\.dense\.bias"/);
    const cfg = JSON.parse(fs.readFileSync(path.join(vitDir, 'config.json'), 'utf8'));
    fs.mkdirSync(path.join(tmp, 'vit-shape'), { recursive: true });
    fs.copyFileSync(path.join(vitDir, 'model.safetensors'), path.join(tmp, 'vit-shape/model.safetensors'));
    fs.writeFileSync(path.join(tmp, 'vit-shape/config.json'), JSON.stringify({ ...cfg, intermediate_size: 97 }));
    assert.throws(() => loadEncoder(path.join(tmp, 'vit-shape'), be), /has shape \[96,48\], expected \[97,48\]/);
    fs.writeFileSync(path.join(tmp, 'vit-shape/config.json'), JSON.stringify({ ...cfg, hidden_act: 'swish' }));
    assert.throws(() => loadEncoder(path.join(tmp, 'vit-shape'), be), /config\.json: hidden_act "swish" is not supported/);
    const rob = loadEncoder(robertaDir, be) as RobertaModel;
    assert.throws(() => rob.forward({ ids: Int32Array.from([0, 300, 2]), B: 1, T: 3 }), /token id 300 in row 0 is outside the vocabulary/);
    assert.throws(() => rob.forward({ ids: new Int32Array(70), B: 1, T: 70 }), /at most 64/);
    assert.throws(() => rob.forward({ ids: Int32Array.from([0, 5, 2]), B: 1, T: 3, mask: new Int32Array(3) }), /row 0 has no unmasked token/);
  });
});
