// The llama2.c peer for decode benchmarks: the forward pass of Karpathy's run.c (llama2.c, MIT
// licence), loop for loop (OpenMP-parallel matmul over output rows, scalar loops the compiler
// vectorises under -Ofast), driven by run.c's greedy loop from BOS. It exists because the issue
// sets run.c's decode speed as the bar and nothing can be downloaded here: bench compiles this
// file with run.c's own flags (gcc -Ofast -march=native -fopenmp) and runs it on the same model
// file, with the same thread count, in the same run.
//
// usage: runc_peer MODEL.bin STEPS   (legacy llama2.c fp32 file; prints one JSON line)
// Timing as run.c reports "achieved tok/s": from the end of the first step to the last.
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} Config;

typedef struct {
  float *token_embedding_table, *rms_att_weight, *rms_ffn_weight, *wq, *wk, *wv, *wo, *w1, *w2, *w3, *rms_final_weight, *wcls;
} Weights;

typedef struct {
  float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits, *key_cache, *value_cache;
  float *k, *v;
} RunState;

static void malloc_run_state(RunState* s, Config* p) {
  int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;
  s->x = calloc(p->dim, sizeof(float));
  s->xb = calloc(p->dim, sizeof(float));
  s->xb2 = calloc(p->dim, sizeof(float));
  s->hb = calloc(p->hidden_dim, sizeof(float));
  s->hb2 = calloc(p->hidden_dim, sizeof(float));
  s->q = calloc(p->dim, sizeof(float));
  s->key_cache = calloc((size_t)p->n_layers * p->seq_len * kv_dim, sizeof(float));
  s->value_cache = calloc((size_t)p->n_layers * p->seq_len * kv_dim, sizeof(float));
  s->att = calloc((size_t)p->n_heads * p->seq_len, sizeof(float));
  s->logits = calloc(p->vocab_size, sizeof(float));
}

static void memory_map_weights(Weights* w, Config* p, float* ptr, int shared_weights) {
  int head_size = p->dim / p->n_heads;
  unsigned long long n_layers = p->n_layers;
  w->token_embedding_table = ptr; ptr += (size_t)p->vocab_size * p->dim;
  w->rms_att_weight = ptr; ptr += n_layers * p->dim;
  w->wq = ptr; ptr += n_layers * p->dim * (p->n_heads * head_size);
  w->wk = ptr; ptr += n_layers * p->dim * (p->n_kv_heads * head_size);
  w->wv = ptr; ptr += n_layers * p->dim * (p->n_kv_heads * head_size);
  w->wo = ptr; ptr += n_layers * (p->n_heads * head_size) * p->dim;
  w->rms_ffn_weight = ptr; ptr += n_layers * p->dim;
  w->w1 = ptr; ptr += n_layers * p->dim * p->hidden_dim;
  w->w2 = ptr; ptr += n_layers * p->hidden_dim * p->dim;
  w->w3 = ptr; ptr += n_layers * p->dim * p->hidden_dim;
  w->rms_final_weight = ptr; ptr += p->dim;
  ptr += (size_t)p->seq_len * head_size / 2;  // skip what used to be freq_cis_real (for RoPE)
  ptr += (size_t)p->seq_len * head_size / 2;  // skip what used to be freq_cis_imag (for RoPE)
  w->wcls = shared_weights ? w->token_embedding_table : ptr;
}

static void rmsnorm(float* o, float* x, float* weight, int size) {
  float ss = 0.0f;
  for (int j = 0; j < size; j++) ss += x[j] * x[j];
  ss /= size;
  ss += 1e-5f;
  ss = 1.0f / sqrtf(ss);
  for (int j = 0; j < size; j++) o[j] = weight[j] * (ss * x[j]);
}

static void softmax(float* x, int size) {
  float max_val = x[0];
  for (int i = 1; i < size; i++)
    if (x[i] > max_val) max_val = x[i];
  float sum = 0.0f;
  for (int i = 0; i < size; i++) {
    x[i] = expf(x[i] - max_val);
    sum += x[i];
  }
  for (int i = 0; i < size; i++) x[i] /= sum;
}

static void matmul(float* xout, float* x, float* w, int n, int d) {
  // W (d,n) @ x (n,) -> xout (d,)
  int i;
#pragma omp parallel for private(i)
  for (i = 0; i < d; i++) {
    float val = 0.0f;
    for (int j = 0; j < n; j++) val += w[(size_t)i * n + j] * x[j];
    xout[i] = val;
  }
}

static float* forward(Config* p, Weights* w, RunState* s, int token, int pos) {
  float* x = s->x;
  int dim = p->dim;
  int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;
  int kv_mul = p->n_heads / p->n_kv_heads;
  int hidden_dim = p->hidden_dim;
  int head_size = dim / p->n_heads;
  memcpy(x, w->token_embedding_table + (size_t)token * dim, dim * sizeof(*x));
  for (unsigned long long l = 0; l < (unsigned long long)p->n_layers; l++) {
    rmsnorm(s->xb, x, w->rms_att_weight + l * dim, dim);
    int loff = l * p->seq_len * kv_dim;
    s->k = s->key_cache + loff + pos * kv_dim;
    s->v = s->value_cache + loff + pos * kv_dim;
    matmul(s->q, s->xb, w->wq + l * dim * dim, dim, dim);
    matmul(s->k, s->xb, w->wk + l * dim * kv_dim, dim, kv_dim);
    matmul(s->v, s->xb, w->wv + l * dim * kv_dim, dim, kv_dim);
    for (int i = 0; i < dim; i += 2) {
      int head_dim = i % head_size;
      float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
      float val = pos * freq;
      float fcr = cosf(val);
      float fci = sinf(val);
      int rotn = i < kv_dim ? 2 : 1;
      for (int v = 0; v < rotn; v++) {
        float* vec = v == 0 ? s->q : s->k;
        float v0 = vec[i];
        float v1 = vec[i + 1];
        vec[i] = v0 * fcr - v1 * fci;
        vec[i + 1] = v0 * fci + v1 * fcr;
      }
    }
    int h;
#pragma omp parallel for private(h)
    for (h = 0; h < p->n_heads; h++) {
      float* q = s->q + h * head_size;
      float* att = s->att + h * p->seq_len;
      for (int t = 0; t <= pos; t++) {
        float* k = s->key_cache + loff + t * kv_dim + (h / kv_mul) * head_size;
        float score = 0.0f;
        for (int i = 0; i < head_size; i++) score += q[i] * k[i];
        score /= sqrtf(head_size);
        att[t] = score;
      }
      softmax(att, pos + 1);
      float* xb = s->xb + h * head_size;
      memset(xb, 0, head_size * sizeof(float));
      for (int t = 0; t <= pos; t++) {
        float* v = s->value_cache + loff + t * kv_dim + (h / kv_mul) * head_size;
        float a = att[t];
        for (int i = 0; i < head_size; i++) xb[i] += a * v[i];
      }
    }
    matmul(s->xb2, s->xb, w->wo + l * dim * dim, dim, dim);
    for (int i = 0; i < dim; i++) x[i] += s->xb2[i];
    rmsnorm(s->xb, x, w->rms_ffn_weight + l * dim, dim);
    matmul(s->hb, s->xb, w->w1 + l * dim * hidden_dim, dim, hidden_dim);
    matmul(s->hb2, s->xb, w->w3 + l * dim * hidden_dim, dim, hidden_dim);
    for (int i = 0; i < hidden_dim; i++) {
      float val = s->hb[i];
      val *= (1.0f / (1.0f + expf(-val)));
      val *= s->hb2[i];
      s->hb[i] = val;
    }
    matmul(s->xb, s->hb, w->w2 + l * dim * hidden_dim, hidden_dim, dim);
    for (int i = 0; i < dim; i++) x[i] += s->xb[i];
  }
  rmsnorm(x, x, w->rms_final_weight, dim);
  matmul(s->logits, x, w->wcls, p->dim, p->vocab_size);
  return s->logits;
}

static int argmax(float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: runc_peer MODEL.bin STEPS\n");
    return 2;
  }
  Config c;
  FILE* f = fopen(argv[1], "rb");
  if (!f || fread(&c, sizeof(Config), 1, f) != 1) {
    fprintf(stderr, "runc_peer: cannot read %s\n", argv[1]);
    return 1;
  }
  int shared = c.vocab_size > 0;
  c.vocab_size = abs(c.vocab_size);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  int fd = open(argv[1], O_RDONLY);
  float* data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (data == MAP_FAILED) {
    fprintf(stderr, "runc_peer: mmap failed\n");
    return 1;
  }
  Weights w;
  memory_map_weights(&w, &c, data + sizeof(Config) / sizeof(float), shared);
  RunState s;
  malloc_run_state(&s, &c);
  int steps = atoi(argv[2]);
  if (steps > c.seq_len) steps = c.seq_len;
  int token = 1, next = 0;  // BOS
  double start = 0;
  for (int pos = 0; pos < steps; pos++) {
    float* logits = forward(&c, &w, &s, token, pos);
    next = argmax(logits, c.vocab_size);
    token = next;
    if (start == 0) start = now_s();
  }
  double end = now_s();
  printf("{\"peer\": \"run.c-equivalent\", \"kind\": \"decode\", \"steps\": %d, \"tokens_per_s\": %.4f, \"last_token\": %d}\n", steps,
         (steps - 1) / (end - start), next);
  return 0;
}
