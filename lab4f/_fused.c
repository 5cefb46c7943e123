/* The fused hot path of live inference: camera frames (uint16) → the back end's pooled features.

   Everything from the camera pixels to the back end's pooled features is linear (dark/flat correction,
   bilinear tile sampling, k+ − k−, the per-tile filters, average pooling), so every pooled feature o is a
   weighted sum of the camera pixels under its tiles. lab4f.bench.fused builds those weights exactly and
   cuts each output's camera footprint into 16-pixel row segments; this kernel evaluates

       out[b, o] = scale[o] · Σ_s Σ_k w[s, k] · frame_b[off[s] + k] + bias[o],   s ∈ [ptr[o], ptr[o+1])

   reading the uint16 frames in place (no crop, no conversion pass, no transpose): one 16-lane load,
   widen and fused multiply-add per segment, four frames per weight load. scale/bias carry the back end's
   eval-mode BatchNorm, so retraining the back end does not rebuild the weights.

   Loaded with ctypes (no Python API is used); built by setup.py for AVX-512, AVX2 and baseline x86-64
   (GCC picks one at load time), or plain C elsewhere. */

#include <stdint.h>
#include <string.h>

#define W 16
typedef float v16f __attribute__((vector_size(64)));
typedef uint16_t v16u __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

static inline __attribute__((always_inline)) v16f load_px(const uint16_t *p) {
    v16u u;
    memcpy(&u, p, sizeof u);
    return __builtin_convertvector(u, v16f);
}

static inline __attribute__((always_inline)) v16f load_w(const float *p) {
    v16f w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline __attribute__((always_inline)) float hsum(v16f a) {  /* pairwise, as the AVX-512 reduce */
    float t[W];
    memcpy(t, &a, sizeof t);
    for (int n = W / 2; n > 0; n /= 2)
        for (int k = 0; k < n; k++) t[k] += t[k + n];
    return t[0];
}

int lab4f_fused_segment_width(void) { return W; }

typedef void (*kernel_fn)(const uint16_t *const *, int64_t, int64_t, const int64_t *, const int64_t *,
                          const float *, const float *, const float *, float *);

/* Portable version: GCC vector extensions, compiled for AVX2 and for baseline x86-64 (or the host elsewhere). */
MULTIVERSION
static void fused_generic(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                          const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                          float *out) {
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t s0 = seg_ptr[o], s1 = seg_ptr[o + 1];
        const float sc = scale[o], bi = bias[o];
        int64_t b = 0;
        for (; b + 4 <= n_frames; b += 4) {
            const uint16_t *f0 = frames[b], *f1 = frames[b + 1], *f2 = frames[b + 2], *f3 = frames[b + 3];
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int64_t s = s0; s < s1; s++) {
                const v16f w = load_w(seg_w + W * s);
                const int64_t off = seg_off[s];
                a0 += w * load_px(f0 + off);
                a1 += w * load_px(f1 + off);
                a2 += w * load_px(f2 + off);
                a3 += w * load_px(f3 + off);
            }
            out[b * n_out + o] = sc * hsum(a0) + bi;
            out[(b + 1) * n_out + o] = sc * hsum(a1) + bi;
            out[(b + 2) * n_out + o] = sc * hsum(a2) + bi;
            out[(b + 3) * n_out + o] = sc * hsum(a3) + bi;
        }
        for (; b < n_frames; b++) {
            const uint16_t *f = frames[b];
            v16f a = {0};
            for (int64_t s = s0; s < s1; s++) a += load_w(seg_w + W * s) * load_px(f + seg_off[s]);
            out[b * n_out + o] = sc * hsum(a) + bi;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LOAD_PX(p) _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))))

/* AVX-512: one 512-bit widen + convert + FMA per segment and frame (GCC splits the portable version's
   conversion into 256-bit halves). */
__attribute__((target("avx512f")))
static void fused_avx512(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                         const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                         float *out) {
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t s0 = seg_ptr[o], s1 = seg_ptr[o + 1];
        const float sc = scale[o], bi = bias[o];
        int64_t b = 0;
        for (; b + 4 <= n_frames; b += 4) {
            const uint16_t *f0 = frames[b], *f1 = frames[b + 1], *f2 = frames[b + 2], *f3 = frames[b + 3];
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t s = s0; s < s1; s++) {
                const __m512 w = _mm512_loadu_ps(seg_w + W * s);
                const int64_t off = seg_off[s];
                a0 = _mm512_fmadd_ps(w, LOAD_PX(f0 + off), a0);
                a1 = _mm512_fmadd_ps(w, LOAD_PX(f1 + off), a1);
                a2 = _mm512_fmadd_ps(w, LOAD_PX(f2 + off), a2);
                a3 = _mm512_fmadd_ps(w, LOAD_PX(f3 + off), a3);
            }
            out[b * n_out + o] = sc * _mm512_reduce_add_ps(a0) + bi;
            out[(b + 1) * n_out + o] = sc * _mm512_reduce_add_ps(a1) + bi;
            out[(b + 2) * n_out + o] = sc * _mm512_reduce_add_ps(a2) + bi;
            out[(b + 3) * n_out + o] = sc * _mm512_reduce_add_ps(a3) + bi;
        }
        for (; b < n_frames; b++) {
            const uint16_t *f = frames[b];
            __m512 a = _mm512_setzero_ps();
            for (int64_t s = s0; s < s1; s++) a = _mm512_fmadd_ps(_mm512_loadu_ps(seg_w + W * s), LOAD_PX(f + seg_off[s]), a);
            out[b * n_out + o] = sc * _mm512_reduce_add_ps(a) + bi;
        }
    }
}

static kernel_fn pick(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? fused_avx512 : fused_generic;
}
#else
static kernel_fn pick(void) { return fused_generic; }
#endif

/* Which implementation runs on this CPU: 2 = AVX-512, 1 = portable (AVX2 where the CPU has it). */
int lab4f_fused_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return pick() == fused_avx512 ? 2 : 1;
#else
    return 1;
#endif
}

/* The portable version whatever the CPU (tests hold both versions against each other). */
void lab4f_fused_u16_portable(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                              const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                              float *out) {
    fused_generic(frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
}

void lab4f_fused_u16(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                     const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                     float *out) {
    static kernel_fn fn = 0;
    if (!fn) fn = pick();
    fn(frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
}
