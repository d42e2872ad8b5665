// The load generator of the serve benchmark, run as its own process so its event loop does not
// share the server's: C concurrent clients, each sending R streaming completions one after
// another to the models given round-robin; prints one JSON object of raw timings.
//   node dist/bench/serve-client.js '{"url":..., "clients":16, "requests":2, "models":[...], "prompt":[...], "maxTokens":64}'

import * as http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

export interface ClientPlan {
  url: string;
  clients: number;
  requests: number; // per client
  models: string[];
  prompt: number[];
  maxTokens: number;
}

export interface ClientResult {
  seconds: number; // wall time of the whole load
  tokens: number; // streamed tokens received
  errors: number;
  ttft: number[]; // ms, one per request
  itl: number[]; // ms between a request's consecutive tokens
}

const plan = JSON.parse(process.argv[2]) as ClientPlan;
const ttft: number[] = [];
const itl: number[] = [];
let tokens = 0;
let errors = 0;

/** One streaming completion over node:http (undici's web streams cost the client several times more CPU per chunk, on the cores the server needs). */
function one(model: string): Promise<void> {
  const t0 = performance.now();
  const body = JSON.stringify({ model, prompt: plan.prompt, max_tokens: plan.maxTokens, temperature: 0, ignore_eos: true, stream: true });
  return new Promise((resolve) => {
    const req = http.request(
      `${plan.url}/v1/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          errors++;
          res.resume();
          res.on('end', resolve);
          return;
        }
        res.setEncoding('utf8');
        let last = 0;
        let buf = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i = buf.indexOf('\n\n');
          while (i >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            i = buf.indexOf('\n\n');
            if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
            if (ev.includes('"error"')) errors++;
            if (!ev.includes('"finish_reason":null')) continue; // a choice's last chunk or the usage chunk
            const now = performance.now();
            if (last === 0) ttft.push(now - t0);
            else itl.push(now - last);
            last = now;
            tokens++;
          }
        });
        res.on('end', resolve);
      },
    );
    req.on('error', () => {
      errors++;
      resolve();
    });
    req.end(body);
  });
}

await (await fetch(`${plan.url}/health`)).text(); // the client's own first-request setup is not the server's latency
const t0 = performance.now();
await Promise.all(
  Array.from({ length: plan.clients }, async (_, c) => {
    for (let r = 0; r < plan.requests; r++) await one(plan.models[(c + r * plan.clients) % plan.models.length]);
  }),
);
const seconds = (performance.now() - t0) / 1000;
const result: ClientResult = { seconds, tokens, errors, ttft, itl };
process.stdout.write(`${JSON.stringify(result)}\n`);
agent.destroy();
