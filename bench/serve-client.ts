// The load generator of the serve benchmark, run as its own process so its event loop does not
// share the server's: C concurrent clients, each sending R streaming completions one after
// another to the models given round-robin; prints one JSON object of raw timings.
//   node dist/bench/serve-client.js '{"url":..., "clients":16, "requests":2, "models":[...], "prompt":[...], "maxTokens":64}'

interface ClientPlan {
  url: string;
  clients: number;
  requests: number; // per client
  models: string[];
  prompt: number[];
  maxTokens: number;
}

const plan = JSON.parse(process.argv[2]) as ClientPlan;
const ttft: number[] = [];
const itl: number[] = [];
let tokens = 0;
let errors = 0;

async function one(model: string): Promise<void> {
  const t0 = performance.now();
  const res = await fetch(`${plan.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: plan.prompt, max_tokens: plan.maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  if (res.status !== 200 || !res.body) {
    errors++;
    await res.text();
    return;
  }
  let last = 0;
  let buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    buf += dec.decode(chunk as Uint8Array, { stream: true });
    let i = buf.indexOf('\n\n');
    while (i >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      i = buf.indexOf('\n\n');
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6)) as { choices?: { text?: string; finish_reason: string | null }[]; error?: unknown };
      if (j.error) errors++;
      if (!j.choices?.[0] || j.choices[0].finish_reason) continue;
      const now = performance.now();
      if (last === 0) ttft.push(now - t0);
      else itl.push(now - last);
      last = now;
      tokens++;
    }
  }
}

await (await fetch(`${plan.url}/health`)).text(); // the client's own first-request setup is not the server's latency
const t0 = performance.now();
await Promise.all(
  Array.from({ length: plan.clients }, async (_, c) => {
    for (let r = 0; r < plan.requests; r++) await one(plan.models[(c + r * plan.clients) % plan.models.length]);
  }),
);
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(`${JSON.stringify({ seconds, tokens, errors, ttft, itl })}\n`);
