// Finding a WebGPU device: the browser's navigator.gpu, or in Node the optional `webgpu` package
// (Dawn, with its prebuilt binaries). Dawn drives the machine's Vulkan driver; where there is no
// GPU driver it can use the SwiftShader Vulkan driver that Debian's `chromium` package ships (a
// CPU emulation: correct, slow), which is what the tests run on. A software adapter is taken only
// when asked for (allowSoftware), never by 'auto'.

/** Where Debian's chromium puts its SwiftShader Vulkan driver. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface GpuDevice {
  device: GPUDevice;
  /** What the adapter is, in words (vendor, architecture, description). */
  description: string;
  /** A software adapter (SwiftShader, a CPU emulation). */
  software: boolean;
}

interface NodeProcess {
  env: Record<string, string | undefined>;
  versions?: { node?: string };
}

function nodeProcess(): NodeProcess | null {
  const p = (globalThis as { process?: NodeProcess }).process;
  return p?.versions?.node ? p : null;
}

function isSoftware(a: GPUAdapter): boolean {
  const i = a.info;
  return Boolean(i?.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe/i.test(`${i?.architecture} ${i?.description} ${i?.device}`);
}

/** Dawn's GPU entry point in Node (null and why when the optional package is missing). */
async function dawn(): Promise<{ create: (flags: string[]) => GPU } | string> {
  try {
    // a variable specifier: bundlers for the browser leave it alone (the page uses navigator.gpu)
    const name = 'webgpu';
    const mod = (await import(name)) as { create: (flags: string[]) => GPU };
    return mod;
  } catch (e) {
    return `the optional package "webgpu" (Dawn for Node) is not installed or does not load here (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); npm install webgpu`;
  }
}

/** Whether the machine has a GPU device node (DRM render nodes, NVIDIA's, WSL's). */
async function gpuDeviceNodes(): Promise<boolean> {
  try {
    const name = 'node:fs';
    const fs = (await import(name)) as typeof import('node:fs');
    const dri = fs.existsSync('/dev/dri') ? fs.readdirSync('/dev/dri').some((f) => f.startsWith('renderD')) : false;
    return dri || fs.existsSync('/dev/nvidia0') || fs.existsSync('/dev/dxg');
  } catch {
    return false;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    const name = 'node:fs';
    const fs = (await import(name)) as typeof import('node:fs');
    return fs.existsSync(file);
  } catch {
    return false;
  }
}

/** Why a Node process has no hardware adapter, known without starting Dawn (only when software is not wanted), or null. */
async function nodeRefusal(allowSoftware: boolean, proc: NodeProcess): Promise<string | null> {
  if (allowSoftware || proc.env.VK_ICD_FILENAMES || proc.env.VK_DRIVER_FILES || (await gpuDeviceNodes())) return null;
  return 'no GPU device on this machine (no /dev/dri render node, no /dev/nvidia0)';
}

const keepAlive: GPU[] = [];

async function nodeAdapter(allowSoftware: boolean, proc: NodeProcess): Promise<GPUAdapter | string> {
  const d = await dawn();
  if (typeof d === 'string') return d;
  if (allowSoftware && !proc.env.VK_ICD_FILENAMES && !proc.env.VK_DRIVER_FILES && (await exists(SWIFTSHADER_ICD))) {
    // SwiftShader beside whatever drivers the loader finds (a high-performance request still
    // prefers a GPU). The Vulkan loader reads this when Dawn makes its instance; SwiftShader's
    // window-system code complains on stderr without a runtime folder.
    const add = proc.env.VK_ADD_DRIVER_FILES;
    proc.env.VK_ADD_DRIVER_FILES = add ? `${add}:${SWIFTSHADER_ICD}` : SWIFTSHADER_ICD;
    proc.env.XDG_RUNTIME_DIR ??= '/tmp';
  }
  // the instance must stay referenced: node-webgpu keeps polling it for events, and a collected
  // one crashed the process at random (in InstanceBase::ProcessEvents, during a mapAsync)
  const gpu = d.create([]);
  keepAlive.push(gpu);
  // Dawn leaves a CPU adapter out of a high-performance request
  const adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? (allowSoftware ? await gpu.requestAdapter() : null);
  return (
    adapter ??
    `Dawn found no usable Vulkan adapter (a GPU with its Vulkan driver${allowSoftware ? `, or SwiftShader from Debian's "chromium" package at ${SWIFTSHADER_ICD}` : ''}; the Vulkan loader is Debian's "libvulkan1"; VK_ICD_FILENAMES chooses a driver)`
  );
}

async function findAdapter(allowSoftware: boolean): Promise<GPUAdapter | string> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return (await nav.gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? 'the browser has WebGPU but returned no adapter';
  const proc = nodeProcess();
  if (!proc) return 'this JavaScript runtime has no WebGPU (navigator.gpu)';
  return nodeAdapter(allowSoftware, proc);
}

async function openDevice(allowSoftware: boolean): Promise<{ gpu: GpuDevice | null; error: string }> {
  try {
    const a = await findAdapter(allowSoftware);
    if (typeof a === 'string') return { gpu: null, error: a };
    const L = a.limits;
    const device = await a.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
        maxBufferSize: L.maxBufferSize,
        maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      },
    });
    const i = a.info;
    const description = [i?.vendor, i?.architecture, i?.description].filter((x) => x).join(' / ') || 'unknown adapter';
    return { gpu: { device, description, software: isSoftware(a) }, error: '' };
  } catch (e) {
    return { gpu: null, error: `WebGPU failed to start: ${e instanceof Error ? e.message : String(e)}` };
  }
}

// One device per process, its drivers chosen before Dawn starts (so a process whose 'auto' found a
// GPU driver but no usable adapter does not fall back to SwiftShader later).
let opened: Promise<{ gpu: GpuDevice | null; error: string }> | null = null;

/**
 * The process's WebGPU device (the adapter's largest buffer and binding limits), or why there is
 * none. Never throws. allowSoftware: accept SwiftShader (and other CPU emulations); without it a
 * software device is refused (and a probe on a machine without a GPU driver starts nothing).
 */
export async function openGpu(allowSoftware: boolean): Promise<{ gpu: GpuDevice | null; error: string }> {
  if (!opened) {
    const proc = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu ? null : nodeProcess();
    const refusal = proc ? await nodeRefusal(allowSoftware, proc) : null;
    if (refusal) return { gpu: null, error: refusal };
    opened ??= openDevice(allowSoftware);
  }
  const r = await opened;
  if (r.gpu?.software && !allowSoftware) return { gpu: null, error: `the only WebGPU adapter is a software one (${r.gpu.description})` };
  return r;
}
