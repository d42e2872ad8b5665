// The server's Prometheus metrics (prom-client, one registry per server so several servers in a
// process do not share counters).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'llama_adapter_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['route', 'status'],
    registers: [this.registry],
  });
  readonly promptTokens = new Counter({
    name: 'llama_adapter_prompt_tokens_total',
    help: 'prompt tokens admitted, by model (adapter name or the base)',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly generatedTokens = new Counter({
    name: 'llama_adapter_generated_tokens_total',
    help: 'tokens generated, by model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly queueLength = new Gauge({ name: 'llama_adapter_queue_length', help: 'sequences waiting for a slot', registers: [this.registry] });
  readonly activeSlots = new Gauge({ name: 'llama_adapter_active_slots', help: 'slots holding a sequence', registers: [this.registry] });
  readonly batchRows = new Histogram({
    name: 'llama_adapter_batch_occupancy',
    help: 'fraction of the slots busy at each engine step',
    buckets: [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1],
    registers: [this.registry],
  });
  readonly ttft = new Histogram({
    name: 'llama_adapter_time_to_first_token_seconds',
    help: 'from the request arriving to its first generated token, by model',
    labelNames: ['model'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly itl = new Histogram({
    name: 'llama_adapter_inter_token_latency_seconds',
    help: 'between two generated tokens of one sequence, by model',
    labelNames: ['model'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'llama_adapter_process_' });
  }
}
