/*
 * Fused kernels for ONNX Runtime's CPU execution provider, registered as a
 * custom-op library (domain "ai.volution"). ONNX Runtime's CPU build has no
 * gradient kernels, so without these a GELU or layer-norm backward is a chain
 * of full passes over memory (eight for GELU, six for layer norm), and
 * train-mode batch norm takes four passes forward and about six backward.
 * The ONNX lowerings of the IR ops listed in FUSED_KERNELS
 * (src/backends/onnx/emit/types.ts) use them.
 *
 * Only the C ABI of ONNX Runtime is used: the OrtApi function table and the
 * OrtCustomOp struct are append-only, so the indices and fields below hold for
 * every release from API version 18 on (onnxruntime-node 1.30 ships API 24).
 *
 * Build: cc -O3 -march=native -fno-math-errno -fPIC -shared -o libvolution_kernels.so volution_kernels.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef struct OrtStatus OrtStatus;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtValue OrtValue;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtApiBase {
  const void* const* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} OrtApiBase;

/* Positions in the OrtApi table (onnxruntime_c_api.h, struct OrtApi). */
enum {
  API_CreateStatus = 0,
  API_CreateCustomOpDomain = 26,
  API_CustomOpDomain_Add = 27,
  API_AddCustomOpDomain = 28,
  API_GetTensorMutableData = 51,
  API_GetDimensionsCount = 61,
  API_GetDimensions = 62,
  API_GetTensorShapeElementCount = 64,
  API_GetTensorTypeAndShape = 65,
  API_KernelContext_GetInput = 90,
  API_KernelContext_GetOutput = 91,
  API_ReleaseTensorTypeAndShapeInfo = 99,
  API_KernelContext_ParallelFor = 274,
};
enum { ORT_INVALID_ARGUMENT = 2, ONNX_FLOAT = 1, ONNX_INT64 = 7, MAX_RANK = 8 };

static const void* const* api;
#define CALL(index, type) ((type)api[index])

typedef struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const struct OrtCustomOp*, const void*, const OrtKernelInfo*);
  const char* (*GetName)(const struct OrtCustomOp*);
  const char* (*GetExecutionProviderType)(const struct OrtCustomOp*);
  int (*GetInputType)(const struct OrtCustomOp*, size_t);
  size_t (*GetInputTypeCount)(const struct OrtCustomOp*);
  int (*GetOutputType)(const struct OrtCustomOp*, size_t);
  size_t (*GetOutputTypeCount)(const struct OrtCustomOp*);
  void (*KernelCompute)(void*, OrtKernelContext*);
  void (*KernelDestroy)(void*);
  int (*GetInputCharacteristic)(const struct OrtCustomOp*, size_t);
  int (*GetOutputCharacteristic)(const struct OrtCustomOp*, size_t);
  int (*GetInputMemoryType)(const struct OrtCustomOp*, size_t);
  int (*GetVariadicInputMinArity)(const struct OrtCustomOp*);
  int (*GetVariadicInputHomogeneity)(const struct OrtCustomOp*);
  int (*GetVariadicOutputMinArity)(const struct OrtCustomOp*);
  int (*GetVariadicOutputHomogeneity)(const struct OrtCustomOp*);
  OrtStatus* (*CreateKernelV2)(const struct OrtCustomOp*, const void*, const OrtKernelInfo*, void**);
  OrtStatus* (*KernelComputeV2)(void*, OrtKernelContext*);
} OrtCustomOp;

/* --- ONNX Runtime glue ---------------------------------------------------- */

static OrtStatus* fail(const char* msg) {
  return CALL(API_CreateStatus, OrtStatus* (*)(int, const char*))(ORT_INVALID_ARGUMENT, msg);
}

typedef struct {
  float* data; /* an int64 input's too (KernelSpec.int64_input), cast where read */
  size_t count;
  size_t rank;
  int64_t dims[MAX_RANK];
} Tensor;

static OrtStatus* input(OrtKernelContext* ctx, size_t i, Tensor* t) {
  const OrtValue* v;
  OrtTensorTypeAndShapeInfo* info;
  OrtStatus* s = CALL(API_KernelContext_GetInput, OrtStatus* (*)(const OrtKernelContext*, size_t, const OrtValue**))(ctx, i, &v);
  if (s) return s;
  if ((s = CALL(API_GetTensorTypeAndShape, OrtStatus* (*)(const OrtValue*, OrtTensorTypeAndShapeInfo**))(v, &info))) return s;
  s = CALL(API_GetDimensionsCount, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, size_t*))(info, &t->rank);
  if (!s && t->rank > MAX_RANK) s = fail("volution kernels: tensors of rank above 8 are not supported");
  if (!s) s = CALL(API_GetDimensions, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t))(info, t->dims, t->rank);
  if (!s) s = CALL(API_GetTensorShapeElementCount, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, size_t*))(info, &t->count);
  CALL(API_ReleaseTensorTypeAndShapeInfo, void (*)(OrtTensorTypeAndShapeInfo*))(info);
  if (s) return s;
  return CALL(API_GetTensorMutableData, OrtStatus* (*)(OrtValue*, void**))((OrtValue*)v, (void**)&t->data);
}

static OrtStatus* output(OrtKernelContext* ctx, size_t i, const int64_t* dims, size_t rank, float** data) {
  OrtValue* v;
  OrtStatus* s = CALL(API_KernelContext_GetOutput, OrtStatus* (*)(OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**))(ctx, i, dims, rank, &v);
  if (s) return s;
  return CALL(API_GetTensorMutableData, OrtStatus* (*)(OrtValue*, void**))(v, (void**)data);
}

static OrtStatus* parallel_for(OrtKernelContext* ctx, void (*fn)(void*, size_t), size_t tasks, void* job) {
  /* Batches: ONNX Runtime hands them to its intra-op threads (0 would let it run all on one). */
  return CALL(API_KernelContext_ParallelFor, OrtStatus* (*)(const OrtKernelContext*, void (*)(void*, size_t), size_t, size_t, void*))(ctx, fn, tasks, tasks < 64 ? tasks : 64, job);
}

/* --- Math: vectorisable float32 exp and normal tail (no libm calls, no branches in the loops) -- */

/* e^x for x in [−87, 0] (callers keep it there, so no clamp; branches would split the vector loops): Cody–Waite
 * reduction and a degree-6 polynomial, relative error ~1e-7. The rounding constant's low bits hold round(x·log₂e)
 * + 127, the exponent of the scale 2^n, read straight from its bits. */
static inline float exp_nonpositive(float x) {
  const float round = 12582912.0f + 127.0f; /* 1.5·2²³: adding it rounds to an integer */
  float shifted = x * 1.44269504088896341f + round;
  float n = shifted - round;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits;
  memcpy(&bits, &shifted, sizeof bits);
  bits <<= 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* The standard normal's tail Φ(−a) past a = |x|, and e^(−a²/2) (GELU's backward needs both), by Abramowitz &
 * Stegun 7.1.26: Φ(−a) = erfc(a/√2)/2 ≈ t·P(t)·e^(−a²/2), t = 1/(1 + p·a/√2), absolute error below 1e-7.
 * a is clamped at TAIL_END = 13 by an integer min on the bits (which sends NaN there too): past it the tail is below
 * float32's range, and e^(−a²/2) ≥ e^(−84.5) keeps exp in range. */
#define TAIL_END 13.0f

typedef struct {
  float a, tail, gauss;
} NormalTail;

static inline NormalTail normal_tail(float x) {
  const float end = TAIL_END;
  uint32_t bits, end_bits;
  memcpy(&bits, &x, sizeof bits);
  memcpy(&end_bits, &end, sizeof end_bits);
  bits &= 0x7fffffffu;
  bits = bits < end_bits ? bits : end_bits;
  float a;
  memcpy(&a, &bits, sizeof a);
  float e = exp_nonpositive(-0.5f * a * a);
  float t = 1.0f / (1.0f + 0.2316418883f * a); /* p/√2 */
  float p = 0.5307027145f;                    /* P's coefficients, halved */
  p = p * t - 0.7265760135f;
  p = p * t + 0.7107068705f;
  p = p * t - 0.1422483680f;
  p = p * t + 0.1274147960f;
  return (NormalTail){a, p * t * e, e};
}

/* --- Gelu(x) → x·Φ(x) and GeluGrad(dy, x) → dy·(Φ(x) + x·φ(x)), exact (erf) GELU ---
 * Compute-bound even at 16 floats a vector. ONNX Runtime's contrib Gelu took 1.65× this one's time
 * (1.5 against 0.9 ms at 8×768×14×14, one thread, inside a session). */

/* GCC otherwise keeps to 32-byte vectors on AVX-512 machines; GELU is compute-bound and gains from 64 bytes
 * (the memory-bound kernels measured no faster, layer norm's slower). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define WIDE_VECTORS
#endif

#define GELU_BLOCK 16384
typedef struct {
  const float* dy; /* NULL for the forward */
  const float* x;
  float* out;
  size_t n;
} GeluJob;

WIDE_VECTORS static void gelu_block(void* p, size_t b) {
  const GeluJob* j = p;
  size_t lo = b * GELU_BLOCK, hi = lo + GELU_BLOCK < j->n ? lo + GELU_BLOCK : j->n;
  for (size_t i = lo; i < hi; i++) {
    float v = j->x[i];
    NormalTail n = normal_tail(v);
    /* x·Φ(x) = max(x, 0) − |x|·Φ(−|x|); written so that NaN passes through */
    j->out[i] = (v < 0.0f ? 0.0f : v) - n.a * n.tail;
  }
}

WIDE_VECTORS static void gelu_grad_block(void* p, size_t b) {
  const GeluJob* j = p;
  size_t lo = b * GELU_BLOCK, hi = lo + GELU_BLOCK < j->n ? lo + GELU_BLOCK : j->n;
  for (size_t i = lo; i < hi; i++) {
    float v = j->x[i];
    NormalTail n = normal_tail(v);
    float cdf = v < 0.0f ? n.tail : 1.0f - n.tail;
    float clamped = v < -TAIL_END ? -TAIL_END : v; /* x clamped as a is, NaN kept: x·φ(x) → 0 at ±∞ */
    clamped = clamped > TAIL_END ? TAIL_END : clamped;
    j->out[i] = j->dy[i] * (cdf + clamped * 0.39894228040143268f * n.gauss); /* φ(x) = e^(−x²/2)/√(2π) */
  }
}

static OrtStatus* gelu(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor x;
  float* y;
  OrtStatus* s;
  if ((s = input(ctx, 0, &x)) || (s = output(ctx, 0, x.dims, x.rank, &y))) return s;
  GeluJob job = {NULL, x.data, y, x.count};
  return parallel_for(ctx, gelu_block, (x.count + GELU_BLOCK - 1) / GELU_BLOCK, &job);
}

static OrtStatus* gelu_grad(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor dy, x;
  float* dx;
  OrtStatus* s;
  if ((s = input(ctx, 0, &dy)) || (s = input(ctx, 1, &x))) return s;
  if (dy.count != x.count) return fail("GeluGrad: dy and x must have the same shape");
  if ((s = output(ctx, 0, x.dims, x.rank, &dx))) return s;
  GeluJob job = {dy.data, x.data, dx, x.count};
  return parallel_for(ctx, gelu_grad_block, (x.count + GELU_BLOCK - 1) / GELU_BLOCK, &job);
}

#define LN_ROWS 256

/* --- LayerNorm(x, w, b, eps[]) → y, mean, rstd over the last axis ------------
 * ONNX Runtime's LayerNormalization is slow on short rows (64 floats: twice
 * PyTorch's time) and gets no faster with a second thread there. */

typedef struct {
  const float *x, *w, *b;
  float *y, *mean, *rstd;
  size_t rows, d;
  float eps;
} LayerNormJob;

/* Σ p[i] and Σ (p[i] − shift)² over a short row, in eight float lanes (vectorised without reassociation). The
 * tail's bounds are spelt out so that GCC, given a constant n, sees the tail is empty. */
static inline float row_sum(const float* p, float shift, int squared, size_t n) {
  float acc[8] = {0};
  size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8)
    for (int k = 0; k < 8; k++) {
      float v = p[i + k] - shift;
      acc[k] += squared ? v * v : v;
    }
  for (size_t i = whole; i < n; i++) {
    float v = p[i] - shift;
    acc[0] += squared ? v * v : v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Always inlined, so that a row length passed as a constant unrolls. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void layer_norm_rows(const LayerNormJob* j, size_t lo, size_t hi, size_t d) {
  for (size_t r = lo; r < hi; r++) {
    const float* x = j->x + r * d;
    float* y = j->y + r * d;
    float mu = row_sum(x, 0.0f, 0, d) / (float)d;
    float rs = 1.0f / sqrtf(row_sum(x, mu, 1, d) / (float)d + j->eps);
    for (size_t c = 0; c < d; c++) y[c] = (x[c] - mu) * rs * j->w[c] + j->b[c];
    j->mean[r] = mu;
    j->rstd[r] = rs;
  }
}

static void layer_norm_block(void* p, size_t blk) {
  const LayerNormJob* j = p;
  size_t lo = blk * LN_ROWS, hi = lo + LN_ROWS < j->rows ? lo + LN_ROWS : j->rows;
  /* Short rows of these common widths, unrolled, took 0.6 of the time (C harness, one thread); from 192 floats
   * on, unrolling gained under 10%, and at 48 nothing. */
  switch (j->d) {
    case 64: layer_norm_rows(j, lo, hi, 64); return;
    case 96: layer_norm_rows(j, lo, hi, 96); return;
    case 128: layer_norm_rows(j, lo, hi, 128); return;
    default: layer_norm_rows(j, lo, hi, j->d);
  }
}

static OrtStatus* layer_norm(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor x, w, b, eps;
  LayerNormJob job;
  OrtStatus* s;
  if ((s = input(ctx, 0, &x)) || (s = input(ctx, 1, &w)) || (s = input(ctx, 2, &b)) || (s = input(ctx, 3, &eps))) return s;
  if (x.rank == 0) return fail("LayerNorm: x must have at least one axis");
  int64_t d = x.dims[x.rank - 1], rows = d ? (int64_t)(x.count / (size_t)d) : 0;
  if (w.count != (size_t)d || b.count != (size_t)d || eps.count != 1) return fail("LayerNorm: expected w and b of the last axis' length, and one epsilon");
  if ((s = output(ctx, 0, x.dims, x.rank, &job.y)) || (s = output(ctx, 1, &rows, 1, &job.mean)) || (s = output(ctx, 2, &rows, 1, &job.rstd))) return s;
  job.x = x.data, job.w = w.data, job.b = b.data, job.rows = (size_t)rows, job.d = (size_t)d, job.eps = eps.data[0];
  return parallel_for(ctx, layer_norm_block, (job.rows + LN_ROWS - 1) / LN_ROWS, &job);
}

/* --- LayerNormGrad(dy, x, mean, rstd, w) → dx, dw, db over the last axis --- */

typedef struct {
  const float *dy, *x, *mean, *rstd, *w;
  float *dx, *partial; /* partial: per row block, Σ dy·x̂ then Σ dy, each d long */
  size_t rows, d;
} LayerNormGradJob;

static void layer_norm_grad_block(void* p, size_t b) {
  const LayerNormGradJob* j = p;
  size_t d = j->d, lo = b * LN_ROWS, hi = lo + LN_ROWS < j->rows ? lo + LN_ROWS : j->rows;
  float* dw = j->partial + b * 2 * d;
  float* db = dw + d;
  memset(dw, 0, 2 * d * sizeof(float));
  for (size_t r = lo; r < hi; r++) {
    const float* dy = j->dy + r * d;
    const float* x = j->x + r * d;
    float* dx = j->dx + r * d;
    float mu = j->mean[r], rs = j->rstd[r], sum_g = 0.0f, sum_gx = 0.0f;
    for (size_t c = 0; c < d; c++) {
      float xh = (x[c] - mu) * rs, g = dy[c] * j->w[c];
      sum_g += g;
      sum_gx += g * xh;
      dw[c] += dy[c] * xh;
      db[c] += dy[c];
    }
    float mean_g = sum_g / (float)d, mean_gx = sum_gx / (float)d;
    for (size_t c = 0; c < d; c++) dx[c] = rs * (dy[c] * j->w[c] - mean_g - (x[c] - mu) * rs * mean_gx);
  }
}

static OrtStatus* layer_norm_grad(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor dy, x, mean, rstd, w;
  float *dx, *dw, *db;
  OrtStatus* s;
  if ((s = input(ctx, 0, &dy)) || (s = input(ctx, 1, &x)) || (s = input(ctx, 2, &mean)) || (s = input(ctx, 3, &rstd)) || (s = input(ctx, 4, &w))) return s;
  if (x.rank == 0) return fail("LayerNormGrad: x must have at least one axis");
  int64_t d = x.dims[x.rank - 1];
  size_t rows = d ? x.count / (size_t)d : 0;
  if (dy.count != x.count || w.count != (size_t)d || mean.count != rows || rstd.count != rows)
    return fail("LayerNormGrad: expected dy shaped like x, w of the last axis' length, and one mean and rstd per row");
  if ((s = output(ctx, 0, x.dims, x.rank, &dx)) || (s = output(ctx, 1, &d, 1, &dw)) || (s = output(ctx, 2, &d, 1, &db))) return s;
  size_t blocks = (rows + LN_ROWS - 1) / LN_ROWS;
  LayerNormGradJob job = {dy.data, x.data, mean.data, rstd.data, w.data, dx, malloc((blocks ? blocks : 1) * 2 * (size_t)d * sizeof(float)), rows, (size_t)d};
  if (!job.partial) return fail("LayerNormGrad: out of memory");
  s = parallel_for(ctx, layer_norm_grad_block, blocks, &job);
  memset(dw, 0, (size_t)d * sizeof(float));
  memset(db, 0, (size_t)d * sizeof(float));
  for (size_t b = 0; !s && b < blocks; b++)
    for (size_t c = 0; c < (size_t)d; c++) {
      dw[c] += job.partial[b * 2 * (size_t)d + c];
      db[c] += job.partial[b * 2 * (size_t)d + (size_t)d + c];
    }
  free(job.partial);
  return s;
}

/* --- Train-mode batch norm over x [N, C, spatial...], one task per channel ---
 * Each channel's values are read from memory once; the passes after the first
 * find them in cache (a channel is N·spatial floats: 100 KB for 8×56×56). */

typedef struct {
  size_t n, c, hw; /* x viewed as [n, c, hw] */
} Layout;

static OrtStatus* channel_layout(const Tensor* x, const char* what, Layout* l) {
  if (x->rank < 2) return fail(what);
  l->n = (size_t)x->dims[0];
  l->c = (size_t)x->dims[1];
  l->hw = l->n && l->c ? x->count / (l->n * l->c) : 0;
  return NULL;
}

/* Σ p[i] over n floats, in double lanes (float32 sums of 10⁵ terms drift). */
static inline double sum_lanes(const float* p, size_t n) {
  double acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += p[i + k];
  for (; i < n; i++) acc[0] += p[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Σ (a[i] − sa)·(b[i] − sb) over n floats, in double lanes. */
static inline double dot_centred(const float* a, float sa, const float* b, float sb, size_t n) {
  double acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += (double)((a[i + k] - sa) * (b[i + k] - sb));
  for (; i < n; i++) acc[0] += (double)((a[i] - sa) * (b[i] - sb));
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

typedef struct {
  const float *x, *w, *b;
  float *y, *mean, *var;
  Layout l;
  float eps;
} BatchNormJob;

/* BatchNormTrain(x, w, b, eps[]) → y, batch mean, biased batch variance */
static void batch_norm_train_channel(void* p, size_t ch) {
  const BatchNormJob* j = p;
  size_t hw = j->l.hw, stride = j->l.c * hw, count = j->l.n * hw;
  double s = 0.0;
  for (size_t i = 0; i < j->l.n; i++) s += sum_lanes(j->x + i * stride + ch * hw, hw);
  float mu = (float)(s / (double)count);
  double ss = 0.0;
  for (size_t i = 0; i < j->l.n; i++) {
    const float* x = j->x + i * stride + ch * hw;
    ss += dot_centred(x, mu, x, mu, hw);
  }
  float var = (float)(ss / (double)count);
  float scale = j->w[ch] / sqrtf(var + j->eps), shift = j->b[ch] - mu * scale;
  for (size_t i = 0; i < j->l.n; i++) {
    const float* x = j->x + i * stride + ch * hw;
    float* y = j->y + i * stride + ch * hw;
    for (size_t k = 0; k < hw; k++) y[k] = x[k] * scale + shift;
  }
  j->mean[ch] = mu;
  j->var[ch] = var;
}

static OrtStatus* batch_norm_train(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor x, w, b, eps;
  BatchNormJob job;
  OrtStatus* s;
  if ((s = input(ctx, 0, &x)) || (s = input(ctx, 1, &w)) || (s = input(ctx, 2, &b)) || (s = input(ctx, 3, &eps))) return s;
  if ((s = channel_layout(&x, "BatchNormTrain: x must be [N, C, ...]", &job.l))) return s;
  int64_t c = (int64_t)job.l.c;
  if (w.count != job.l.c || b.count != job.l.c || eps.count != 1) return fail("BatchNormTrain: expected w and b of x's channel count, and one epsilon");
  if ((s = output(ctx, 0, x.dims, x.rank, &job.y)) || (s = output(ctx, 1, &c, 1, &job.mean)) || (s = output(ctx, 2, &c, 1, &job.var))) return s;
  job.x = x.data, job.w = w.data, job.b = b.data, job.eps = eps.data[0];
  return parallel_for(ctx, batch_norm_train_channel, job.l.c, &job);
}

typedef struct {
  const float *dy, *x, *mean, *rstd, *w;
  float *dx, *dw, *db;
  Layout l;
} BatchNormGradJob;

/* BatchNormTrainGrad(dy, x, mean, rstd, w) → dx, dw, db: with S1 = Σ dy, S2 = Σ dy·(x − μ) per channel,
 * dx = w·r·(dy − S1/n − (x − μ)·r²·S2/n), dw = S2·r, db = S1. */
static void batch_norm_grad_channel(void* p, size_t ch) {
  const BatchNormGradJob* j = p;
  size_t hw = j->l.hw, stride = j->l.c * hw;
  float mu = j->mean[ch], r = j->rstd[ch];
  double s1 = 0.0, s2 = 0.0;
  for (size_t i = 0; i < j->l.n; i++) {
    size_t at = i * stride + ch * hw;
    s1 += sum_lanes(j->dy + at, hw);
    s2 += dot_centred(j->dy + at, 0.0f, j->x + at, mu, hw);
  }
  float inv_n = 1.0f / (float)(j->l.n * hw), wr = j->w[ch] * r;
  float k2 = -wr * r * r * (float)s2 * inv_n, k3 = -wr * (float)s1 * inv_n - k2 * mu;
  for (size_t i = 0; i < j->l.n; i++) {
    size_t at = i * stride + ch * hw;
    const float *dy = j->dy + at, *x = j->x + at;
    float* dx = j->dx + at;
    for (size_t k = 0; k < hw; k++) dx[k] = wr * dy[k] + k2 * x[k] + k3;
  }
  j->dw[ch] = (float)s2 * r;
  j->db[ch] = (float)s1;
}

static OrtStatus* batch_norm_train_grad(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor dy, x, mean, rstd, w;
  BatchNormGradJob job;
  OrtStatus* s;
  if ((s = input(ctx, 0, &dy)) || (s = input(ctx, 1, &x)) || (s = input(ctx, 2, &mean)) || (s = input(ctx, 3, &rstd)) || (s = input(ctx, 4, &w))) return s;
  if ((s = channel_layout(&x, "BatchNormTrainGrad: x must be [N, C, ...]", &job.l))) return s;
  int64_t c = (int64_t)job.l.c;
  if (dy.count != x.count || mean.count != job.l.c || rstd.count != job.l.c || w.count != job.l.c)
    return fail("BatchNormTrainGrad: expected dy shaped like x, and mean, rstd and w of x's channel count");
  if ((s = output(ctx, 0, x.dims, x.rank, &job.dx)) || (s = output(ctx, 1, &c, 1, &job.dw)) || (s = output(ctx, 2, &c, 1, &job.db))) return s;
  job.dy = dy.data, job.x = x.data, job.mean = mean.data, job.rstd = rstd.data, job.w = w.data;
  return parallel_for(ctx, batch_norm_grad_channel, job.l.c, &job);
}

/* --- MaxPool2dGrad(dy, x, window[8]) → dx: each window's dy added at its first maximum ------
 * window = (kh, kw, sh, sw, pad top, left, bottom, right). The maxima are found again in x (from
 * cache), so the forward needs no indices; first maximum in row-major order, strictly greater
 * replaces (NaN never wins), as ONNX Runtime's MaxPool computes its Indices. One task per plane. */

typedef struct {
  const float *dy, *x;
  float* dx;
  int64_t kh, kw, sh, sw, pt, pl;
  int64_t h, w, ho, wo;
} MaxPoolJob;

static void max_pool_grad_plane(void* p, size_t plane) {
  const MaxPoolJob* j = p;
  const float* x = j->x + plane * (size_t)(j->h * j->w);
  const float* dy = j->dy + plane * (size_t)(j->ho * j->wo);
  float* dx = j->dx + plane * (size_t)(j->h * j->w);
  memset(dx, 0, (size_t)(j->h * j->w) * sizeof(float));
  for (int64_t oh = 0; oh < j->ho; oh++) {
    int64_t r = oh * j->sh - j->pt, r0 = r < 0 ? 0 : r, r1 = r + j->kh < j->h ? r + j->kh : j->h;
    for (int64_t ow = 0; ow < j->wo; ow++) {
      int64_t q = ow * j->sw - j->pl, c0 = q < 0 ? 0 : q, c1 = q + j->kw < j->w ? q + j->kw : j->w;
      int64_t arg = r0 * j->w + c0;
      float m = -INFINITY;
      for (int64_t rr = r0; rr < r1; rr++)
        for (int64_t cc = c0; cc < c1; cc++) {
          float v = x[rr * j->w + cc];
          if (v > m) m = v, arg = rr * j->w + cc;
        }
      dx[arg] += dy[oh * j->wo + ow];
    }
  }
}

static OrtStatus* max_pool_grad(void* kernel, OrtKernelContext* ctx) {
  (void)kernel;
  Tensor dy, x, window;
  MaxPoolJob job;
  OrtStatus* s;
  if ((s = input(ctx, 0, &dy)) || (s = input(ctx, 1, &x)) || (s = input(ctx, 2, &window))) return s;
  const int64_t* a = (const int64_t*)(void*)window.data;
  if (x.rank != 4 || dy.rank != 4 || window.count != 8) return fail("MaxPool2dGrad: expected dy and x of rank 4 and a window of 8 integers");
  job = (MaxPoolJob){dy.data, x.data, NULL, a[0], a[1], a[2], a[3], a[4], a[5], x.dims[2], x.dims[3], dy.dims[2], dy.dims[3]};
  /* Every window must overlap x (padding at most half the kernel) and the pooled size must follow from it. */
  int ok = dy.dims[0] == x.dims[0] && dy.dims[1] == x.dims[1] && job.kh > 0 && job.kw > 0 && job.sh > 0 && job.sw > 0 &&
           2 * a[4] <= a[0] && 2 * a[6] <= a[0] && 2 * a[5] <= a[1] && 2 * a[7] <= a[1] &&
           job.ho == (job.h + a[4] + a[6] - job.kh) / job.sh + 1 && job.wo == (job.w + a[5] + a[7] - job.kw) / job.sw + 1;
  if (!ok) return fail("MaxPool2dGrad: dy's shape does not follow from x's and the window");
  if ((s = output(ctx, 0, x.dims, x.rank, &job.dx))) return s;
  return parallel_for(ctx, max_pool_grad_plane, (size_t)(x.dims[0] * x.dims[1]), &job);
}

/* --- Registration ---------------------------------------------------------- */

typedef struct {
  const char* name;
  size_t inputs, outputs;
  OrtStatus* (*compute)(void*, OrtKernelContext*);
  int int64_input; /* the index of an int64 input, −1 for none (every other tensor is float32) */
} KernelSpec;

static const KernelSpec SPECS[] = {
    {"Gelu", 1, 1, gelu, -1},
    {"GeluGrad", 2, 1, gelu_grad, -1},
    {"LayerNorm", 4, 3, layer_norm, -1},
    {"LayerNormGrad", 5, 3, layer_norm_grad, -1},
    {"BatchNormTrain", 4, 3, batch_norm_train, -1},
    {"BatchNormTrainGrad", 5, 3, batch_norm_train_grad, -1},
    {"MaxPool2dGrad", 3, 1, max_pool_grad, 2},
};
#define KERNELS (sizeof SPECS / sizeof SPECS[0])
static OrtCustomOp ops[KERNELS];

static const KernelSpec* spec(const OrtCustomOp* op) { return &SPECS[op - ops]; }
static OrtStatus* create_kernel(const OrtCustomOp* op, const void* a, const OrtKernelInfo* info, void** kernel) {
  (void)a, (void)info;
  *kernel = (void*)spec(op);
  return NULL;
}
static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) { return ((const KernelSpec*)kernel)->compute(kernel, ctx); }
static void destroy(void* kernel) { (void)kernel; }
static const char* name(const OrtCustomOp* op) { return spec(op)->name; }
static const char* cpu(const OrtCustomOp* op) { (void)op; return "CPUExecutionProvider"; }
static int input_type(const OrtCustomOp* op, size_t i) { return (int)i == spec(op)->int64_input ? ONNX_INT64 : ONNX_FLOAT; }
static int float32(const OrtCustomOp* op, size_t i) { (void)op, (void)i; return ONNX_FLOAT; }
static size_t input_count(const OrtCustomOp* op) { return spec(op)->inputs; }
static size_t output_count(const OrtCustomOp* op) { return spec(op)->outputs; }
static int required(const OrtCustomOp* op, size_t i) { (void)op, (void)i; return 0; }
static int default_memory(const OrtCustomOp* op, size_t i) { (void)op, (void)i; return 0; }
static int one(const OrtCustomOp* op) { (void)op; return 1; }

OrtStatus* RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  api = base->GetApi(18);
  if (!api) return NULL; /* older than ONNX Runtime 1.18: register nothing, the graphs then fail to load with a clear error */
  OrtCustomOpDomain* domain;
  OrtStatus* s = CALL(API_CreateCustomOpDomain, OrtStatus* (*)(const char*, OrtCustomOpDomain**))("ai.volution", &domain);
  for (size_t i = 0; !s && i < KERNELS; i++) {
    OrtCustomOp* op = &ops[i];
    memset(op, 0, sizeof *op);
    op->version = 16; /* the V2 entry points (status-returning) and nothing newer */
    op->GetName = name;
    op->GetExecutionProviderType = cpu;
    op->GetInputType = input_type;
    op->GetInputTypeCount = input_count;
    op->GetOutputType = float32;
    op->GetOutputTypeCount = output_count;
    op->KernelDestroy = destroy;
    op->GetInputCharacteristic = required;
    op->GetOutputCharacteristic = required;
    op->GetInputMemoryType = default_memory;
    op->GetVariadicInputMinArity = one;
    op->GetVariadicInputHomogeneity = one;
    op->GetVariadicOutputMinArity = one;
    op->GetVariadicOutputHomogeneity = one;
    op->CreateKernelV2 = create_kernel;
    op->KernelComputeV2 = compute;
    s = CALL(API_CustomOpDomain_Add, OrtStatus* (*)(OrtCustomOpDomain*, const OrtCustomOp*))(domain, op);
  }
  if (s) return s;
  return CALL(API_AddCustomOpDomain, OrtStatus* (*)(OrtSessionOptions*, OrtCustomOpDomain*))(options, domain);
}
