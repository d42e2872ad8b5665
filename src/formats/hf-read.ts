// Hugging Face Llama directories without a file system (the browser build reads them from fetched
// bytes; formats/hf.ts gives them a folder on disk): config.json (+ generation_config.json) and
// model.safetensors or sharded model-*.safetensors with model.safetensors.index.json. Maps
// config.json onto LlamaConfig and HF tensor names onto canonical weights, un-permuting q/k rows
// from HF's rotate-half RoPE order to the interleaved (Meta / llama2.c) order; and the other way,
// the HF tensors of canonical weights (formats/hf.ts writes them).
import { llamaConfig, type ConfigFieldNames, type Llama3RopeScaling, type LlamaConfig } from '../core/config.js';
import { LlamaAdapterError, check } from '../core/errors.js';
import { matrixToF32 } from '../core/quant.js';
import { toBf16, toF16, type Matrix, type ModelWeights } from '../core/weights.js';
import { WeightAssembler, type TensorRequest, type TensorValues } from './assemble.js';
import { resolveDtype, type ModelFile, type ReadModelOptions } from './model-file.js';
import { canonicalTensors, explainShape, ropeHeads, shapeStr, tensorOf, type CanonicalTensor, type LayerRole, type ModelRole } from './roles.js';
import { safetensorsFromBytes, type SafetensorsFile, type WritableTensor } from '../core/safetensors-bytes.js';

export const HF_CONFIG = 'config.json';
const HF_GENERATION_CONFIG = 'generation_config.json';
export const HF_SINGLE = 'model.safetensors';
export const HF_INDEX = 'model.safetensors.index.json';

/** The files of a model folder, wherever they are (a folder on disk; bytes fetched by a page). */
export interface ModelDir {
  /** What errors call the folder. */
  readonly path: string;
  /** What errors call a file in it (its path). */
  file(name: string): string;
  has(name: string): boolean;
  /** The names of its files. */
  list(): string[];
  /** A file as UTF-8 text (throws naming it when it cannot be read). */
  text(name: string): string;
  /** A safetensors file in it (lazy: read tensor by tensor, where the folder can). */
  safetensors(name: string, options?: { lazy?: boolean }): SafetensorsFile;
}

/** A model folder held in memory: file name -> bytes; `path` is what errors call it. */
export function memoryDir(path: string, files: Readonly<Record<string, Uint8Array>>): ModelDir {
  const file = (name: string): string => `${path}/${name}`;
  const get = (name: string): Uint8Array => {
    const b = files[name];
    if (!b) throw new LlamaAdapterError(`${file(name)}: no such file`);
    return b;
  };
  return {
    path,
    file,
    has: (name) => Object.hasOwn(files, name),
    list: () => Object.keys(files),
    text: (name) => new TextDecoder().decode(get(name)),
    safetensors: (name) => safetensorsFromBytes(file(name), get(name)),
  };
}

// ---------------------------------------------------------------- RoPE row order

/**
 * HF -> canonical, in place. Per head of `headDim` rows (each `cols` wide), HF row j (j < hs/2)
 * holds Meta row 2j and HF row hs/2 + j holds Meta row 2j+1; i.e.
 * Meta = HF.view(nHeads, 2, hs/2, cols).transpose(1, 2).reshape(nHeads*hs, cols).
 */
export function unpermuteHfRows(data: Float32Array | Uint16Array, nHeads: number, headDim: number, cols: number): void {
  permuteRows(data, nHeads, headDim, cols, true);
}

/** Canonical -> HF, in place (the inverse of unpermuteHfRows; what HF's conversion script does). */
export function permuteToHfRows(data: Float32Array | Uint16Array, nHeads: number, headDim: number, cols: number): void {
  permuteRows(data, nHeads, headDim, cols, false);
}

function permuteRows(data: Float32Array | Uint16Array, nHeads: number, headDim: number, cols: number, toMeta: boolean): void {
  if (data.length !== nHeads * headDim * cols || headDim % 2 !== 0) {
    throw new Error(`permuteRows: ${data.length} values do not form (${nHeads} x ${headDim}, ${cols}) with even head size`);
  }
  const half = headDim / 2;
  const block = headDim * cols;
  for (let h = 0; h < nHeads; h++) {
    const base = h * block;
    const tmp = data.slice(base, base + block); // (headDim, cols) of this head
    for (let j = 0; j < half; j++) {
      for (let t = 0; t < 2; t++) {
        const meta = 2 * j + t;
        const hf = t * half + j;
        const [dst, src] = toMeta ? [meta, hf] : [hf, meta];
        data.set(tmp.subarray(src * cols, (src + 1) * cols), base + dst * cols);
      }
    }
  }
}

// ---------------------------------------------------------------- config.json

type Json = Record<string, unknown>;

/** config.json's names for the LlamaConfig fields (in messages). */
const HF_CONFIG_NAMES: ConfigFieldNames = {
  dim: 'hidden_size',
  nLayers: 'num_hidden_layers',
  nHeads: 'num_attention_heads',
  nKvHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  hiddenDim: 'intermediate_size',
  vocabSize: 'vocab_size',
  maxSeqLen: 'max_position_embeddings',
};

/** JSON text parsed, errors naming `file`. */
export function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LlamaAdapterError(`${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * LlamaConfig from a parsed config.json (`file` names it in errors) and, optionally, a parsed
 * generation_config.json (a fallback for bos/eos ids).
 */
function hfConfigFromJson(json: unknown, file: string, generation: unknown = null): LlamaConfig {
  check(isObject(json), `${file}: expected a JSON object`);
  const c = json;

  // architecture
  const archs = Array.isArray(c.architectures) ? c.architectures.filter((a): a is string => typeof a === 'string') : [];
  const modelType = typeof c.model_type === 'string' ? c.model_type : undefined;
  const supported = ['LlamaForCausalLM', 'MistralForCausalLM'];
  const ok = archs.length > 0 ? archs.some((a) => supported.includes(a)) : modelType === 'llama' || modelType === 'mistral';
  check(ok, () => `${file}: unsupported architecture ${archs.length ? archs.join(', ') : (modelType ?? '(none given)')} (expected LlamaForCausalLM)`);

  const int = (key: string, dflt?: number): number => {
    const v = c[key];
    if (v === undefined || v === null) {
      check(dflt !== undefined, `${file}: missing "${key}"`);
      return dflt;
    }
    check(Number.isSafeInteger(v) && (v as number) > 0, () => `${file}: "${key}" is ${JSON.stringify(v)}, expected a positive integer`);
    return v as number;
  };
  const num = (key: string, dflt: number): number => {
    const v = c[key];
    if (v === undefined || v === null) return dflt;
    check(typeof v === 'number' && Number.isFinite(v) && v > 0, () => `${file}: "${key}" is ${JSON.stringify(v)}, expected a positive number`);
    return v;
  };

  const nHeads = int('num_attention_heads');
  const vocabSize = int('vocab_size');
  const maxSeqLen = int('max_position_embeddings', 2048);

  // features we do not implement: refuse rather than silently compute something else
  if (c.hidden_act !== undefined && c.hidden_act !== null) {
    check(c.hidden_act === 'silu', () => `${file}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported (only "silu")`);
  }
  check(c.attention_bias !== true, `${file}: attention_bias true is not supported (Llama projections have no bias)`);
  check(c.mlp_bias !== true, `${file}: mlp_bias true is not supported (Llama projections have no bias)`);
  if (typeof c.sliding_window === 'number' && c.sliding_window < maxSeqLen) {
    throw new LlamaAdapterError(
      `${file}: sliding-window attention (sliding_window ${c.sliding_window} < max_position_embeddings ${maxSeqLen}) is not supported`,
    );
  }

  // bos / eos: config.json, then generation_config.json, then llamaConfig's defaults
  const gen = isObject(generation) ? generation : {};
  const tokenId = (key: string): number | undefined => {
    for (const [src, where] of [
      [c[key], file],
      [gen[key], HF_GENERATION_CONFIG],
    ] as const) {
      let v = src;
      if (Array.isArray(v)) v = v[0];
      if (v === undefined || v === null) continue;
      check(
        Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) < vocabSize,
        () => `${where}: "${key}" is ${JSON.stringify(src)}, expected a token id below vocab_size ${vocabSize}`,
      );
      return v as number;
    }
    return undefined;
  };

  return llamaConfig(
    {
      dim: int('hidden_size'),
      nLayers: int('num_hidden_layers'),
      nHeads,
      nKvHeads: int('num_key_value_heads', nHeads),
      headDim: c.head_dim === undefined || c.head_dim === null ? undefined : int('head_dim'),
      hiddenDim: int('intermediate_size'),
      vocabSize,
      maxSeqLen,
      normEps: num('rms_norm_eps', 1e-6),
      ropeTheta: num('rope_theta', 10000),
      ropeScaling: parseRopeScaling(c.rope_scaling, file),
      tiedEmbeddings: c.tie_word_embeddings === true,
      bosId: tokenId('bos_token_id'),
      eosId: tokenId('eos_token_id'),
    },
    { where: file, names: HF_CONFIG_NAMES },
  );
}

function parseRopeScaling(rs: unknown, file: string): Llama3RopeScaling | null {
  if (rs === undefined || rs === null) return null;
  check(isObject(rs), `${file}: "rope_scaling" must be an object or null`);
  const type = rs.rope_type ?? rs.type;
  if (type === 'default') return null;
  check(type === 'llama3', () => `${file}: rope_scaling type ${JSON.stringify(type)} is not supported (only "llama3" is)`);
  const pos = (key: string): number => {
    const v = rs[key];
    check(typeof v === 'number' && Number.isFinite(v) && v > 0, () => `${file}: rope_scaling.${key} is ${JSON.stringify(v)}, expected a positive number`);
    return v;
  };
  const r: Llama3RopeScaling = {
    factor: pos('factor'),
    lowFreqFactor: pos('low_freq_factor'),
    highFreqFactor: pos('high_freq_factor'),
    originalMaxPos: pos('original_max_position_embeddings'),
  };
  check(r.highFreqFactor > r.lowFreqFactor, `${file}: rope_scaling.high_freq_factor (${r.highFreqFactor}) must exceed low_freq_factor (${r.lowFreqFactor})`);
  return r;
}

/** Read config.json (and generation_config.json when present) of an HF directory. */
function readHfConfig(dir: ModelDir): LlamaConfig {
  const file = dir.file(HF_CONFIG);
  check(dir.has(HF_CONFIG), `${dir.path}: not a Hugging Face model directory (no ${HF_CONFIG})`);
  const gen = dir.has(HF_GENERATION_CONFIG) ? parseJson(dir.text(HF_GENERATION_CONFIG), dir.file(HF_GENERATION_CONFIG)) : null;
  return hfConfigFromJson(parseJson(dir.text(HF_CONFIG), file), file, gen);
}

// ---------------------------------------------------------------- tensor names

/** HF tensor names of the canonical roles (roles.ts); block tensors are under model.layers.{i}. */
const HF_MODEL_KEYS: Readonly<Record<ModelRole, string>> = {
  tok_embd: 'model.embed_tokens.weight',
  output_norm: 'model.norm.weight',
  output: 'lm_head.weight',
};
const HF_LAYER_KEYS: Readonly<Record<LayerRole, string>> = {
  attn_norm: 'input_layernorm.weight',
  attn_q: 'self_attn.q_proj.weight',
  attn_k: 'self_attn.k_proj.weight',
  attn_v: 'self_attn.v_proj.weight',
  attn_output: 'self_attn.o_proj.weight',
  ffn_norm: 'post_attention_layernorm.weight',
  ffn_gate: 'mlp.gate_proj.weight',
  ffn_up: 'mlp.up_proj.weight',
  ffn_down: 'mlp.down_proj.weight',
};

function hfName(t: CanonicalTensor): string {
  return t.layer === null ? HF_MODEL_KEYS[t.role as ModelRole] : `model.layers.${t.layer}.${HF_LAYER_KEYS[t.role as LayerRole]}`;
}

// ---------------------------------------------------------------- loading

const FLOAT_DTYPES: readonly string[] = ['F32', 'BF16', 'F16', 'F64'];

/** Read an HF Llama directory, wherever its files are, into canonical weights. */
export function readHfDir(dir: ModelDir, options: ReadModelOptions = {}): ModelFile {
  const dtype = resolveDtype(options.dtype);
  const hfConfig = readHfConfig(dir);

  // where each tensor lives (file names in the folder)
  const single = dir.file(HF_SINGLE);
  const indexFile = dir.file(HF_INDEX);
  const location = new Map<string, string>(); // tensor name -> file name
  let singleFile: SafetensorsFile | null = null;
  let missingWhere: string;
  if (dir.has(HF_SINGLE)) {
    singleFile = dir.safetensors(HF_SINGLE, { lazy: options.lazy });
    for (const n of singleFile.names()) location.set(n, HF_SINGLE);
    missingWhere = single;
  } else if (dir.has(HF_INDEX)) {
    const idx = parseJson(dir.text(HF_INDEX), indexFile);
    check(isObject(idx) && isObject(idx.weight_map), `${indexFile}: expected an object with a "weight_map" object`);
    for (const [name, f] of Object.entries(idx.weight_map)) {
      check(
        typeof f === 'string' && f.length > 0 && !/[/\\]/.test(f) && f !== '.' && f !== '..',
        () => `${indexFile}: weight_map entry for "${name}" is ${JSON.stringify(f)}, expected a file name in ${dir.path}`,
      );
      location.set(name, f as string);
    }
    missingWhere = `${indexFile}: weight_map`;
  } else {
    const others = dir.list().filter((f) => /\.(bin|pth|pt|gguf)$/.test(f));
    throw new LlamaAdapterError(
      `${dir.path}: no ${HF_SINGLE} or ${HF_INDEX}${others.length ? ` (found ${others.join(', ')}: only safetensors weights are supported)` : ''}`,
    );
  }

  // tied embeddings: the embedding may be stored only as lm_head.weight (e.g. tinystories-656k,
  // whose __metadata__ maps model.embed_tokens.weight to lm_head.weight)
  const hasEmbed = location.has(HF_MODEL_KEYS.tok_embd);
  const hasHead = location.has(HF_MODEL_KEYS.output);
  const embedName = hasEmbed || !hasHead ? HF_MODEL_KEYS.tok_embd : HF_MODEL_KEYS.output;
  const config = { ...hfConfig, tiedEmbeddings: hfConfig.tiedEmbeddings || !hasEmbed };
  if (!config.tiedEmbeddings && !hasHead) {
    throw new LlamaAdapterError(
      `${missingWhere}: missing tensor "${HF_MODEL_KEYS.output}" (expected shape ${shapeStr([config.vocabSize, config.dim])}; ${HF_CONFIG} says tie_word_embeddings is false)`,
    );
  }
  for (const n of location.keys()) {
    check(
      !/^model\.layers\.\d+\.(self_attn|mlp)\.\w+\.bias$/.test(n),
      () => `${dir.file(location.get(n) as string)}: tensor "${n}": projection biases are not supported by the Llama architecture`,
    );
  }
  const asm = new WeightAssembler(config, dtype, { names: HF_CONFIG_NAMES, configFile: HF_CONFIG, checkFinite: options.checkTensors });
  const wanted = (req: TensorRequest): string => (req.role === 'tok_embd' ? embedName : hfName(req));
  for (const req of asm.requests) {
    check(
      location.has(wanted(req)),
      () => `${missingWhere}: missing tensor "${wanted(req)}" (expected shape ${shapeStr(req.shape)} = ${explainShape(req, HF_CONFIG_NAMES)})`,
    );
  }

  // read shard by shard, so only one file's bytes are held at a time
  const dtypes: string[] = [];
  const byFile = new Map<string, TensorRequest[]>();
  for (const req of asm.requests) {
    const f = location.get(wanted(req)) as string;
    byFile.set(f, [...(byFile.get(f) ?? []), req]);
  }
  for (const [fileName, reqs] of byFile) {
    const file = dir.file(fileName);
    let st: SafetensorsFile;
    if (singleFile) st = singleFile;
    else {
      check(dir.has(fileName), () => `${indexFile}: maps tensor "${wanted(reqs[0])}" to ${fileName}, which does not exist`);
      st = dir.safetensors(fileName, { lazy: options.lazy });
    }
    for (const req of reqs) {
      const name = wanted(req);
      check(
        st.has(name),
        () => `${file}: missing tensor "${name}" (expected shape ${shapeStr(req.shape)}${singleFile ? '' : `; ${HF_INDEX} maps it to this file`})`,
      );
      const info = st.info(name);
      check(
        FLOAT_DTYPES.includes(info.dtype),
        () => `${file}: tensor "${name}" has dtype ${info.dtype}, which is not supported for weights (supported: ${FLOAT_DTYPES.join(', ')})`,
      );
      if (!dtypes.includes(info.dtype)) dtypes.push(info.dtype);
      const heads = ropeHeads(req, config);
      asm.put(req, {
        file,
        name,
        shape: info.shape,
        read: (): TensorValues => {
          // BF16 kept as stored for bf16 loads (no f32 round trip)
          const v: TensorValues =
            req.dtype === 'bf16' && info.dtype === 'BF16' ? { dtype: 'bf16', data: st.tensorBf16(name) } : { dtype: 'f32', data: st.tensorF32(name) };
          if (heads) unpermuteHfRows(v.data, heads, config.headDim, req.shape[1]);
          return v;
        },
      });
    }
  }
  const { weights, fingerprint } = asm.finish();
  const tok = ['tokenizer.json', 'tokenizer.model'].find((f) => dir.has(f));
  return {
    path: dir.path,
    format: 'hf-safetensors',
    config,
    weights,
    sourceDtypes: dtypes,
    tokenizerPath: tok ? dir.file(tok) : null,
    fingerprint,
  };
}

// ---------------------------------------------------------------- the HF tensors of canonical weights

export type HfSaveDtype = 'F32' | 'BF16' | 'F16';

/** config.json contents for a LlamaConfig. */
export function hfConfigJson(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: c.dim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    intermediate_size: c.hiddenDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling
      ? {
          rope_type: 'llama3',
          factor: c.ropeScaling.factor,
          low_freq_factor: c.ropeScaling.lowFreqFactor,
          high_freq_factor: c.ropeScaling.highFreqFactor,
          original_max_position_embeddings: c.ropeScaling.originalMaxPos,
        }
      : null,
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: c.bosId,
    eos_token_id: c.eosId,
    attention_bias: false,
    mlp_bias: false,
  };
}

function matrixAs(m: Matrix, dtype: HfSaveDtype, permuteHeads: number, headDim: number): Float32Array | Uint16Array {
  if (dtype === 'BF16') {
    const u16 = m.dtype === 'bf16' ? m.data.slice() : toBf16(matrixToF32(m));
    if (permuteHeads) permuteToHfRows(u16, permuteHeads, headDim, m.cols);
    return u16;
  }
  const f32 = m.dtype === 'f32' ? m.data.slice() : matrixToF32(m); // a copy for bf16 / quantized
  if (permuteHeads) permuteToHfRows(f32, permuteHeads, headDim, m.cols);
  return dtype === 'F16' ? toF16(f32) : f32;
}

/**
 * The HF tensors of canonical weights (q/k rows permuted to HF order; copies, the weights are not
 * touched). Matrices are stored as `dtype`, norms always as F32; tied weights store only
 * model.embed_tokens.weight.
 */
export function hfTensors(c: LlamaConfig, w: ModelWeights, dtype: HfSaveDtype = 'F32'): WritableTensor[] {
  return canonicalTensors({ ...c, tiedEmbeddings: w.output === w.tokEmbd }).map((t): WritableTensor => {
    const name = hfName(t);
    const v = tensorOf(w, t);
    if (v instanceof Float32Array) return { name, dtype: 'F32', shape: [v.length], data: v };
    const data = matrixAs(v, dtype, ropeHeads(t, c), c.headDim);
    const shape = [v.rows, v.cols];
    if (data instanceof Float32Array) return { name, dtype: 'F32', shape, data };
    return { name, dtype: dtype === 'F16' ? 'F16' : 'BF16', shape, data };
  });
}
