/* The fused hot path of live inference: camera frames (uint16) → the back end's pooled features.

   Everything from the camera pixels to the back end's pooled features is linear (dark/flat correction,
   bilinear tile sampling, k+ − k−, the per-tile filters, average pooling), so every pooled feature o is a
   weighted sum of the camera pixels under its tiles. lab4f.bench.fused builds those weights exactly and
   cuts each output's camera footprint into 16-pixel row segments; this kernel evaluates

       out[b, o] = scale[o] · Σ_s Σ_k w[s, k] · frame_b[off[s] + k] + bias[o],   s ∈ [ptr[o], ptr[o+1])

   reading the uint16 frames in place (no crop, no conversion pass, no transpose): one 16-lane load,
   widen and fused multiply-add per segment, four frames per weight load. scale/bias carry the back end's
   eval-mode BatchNorm, so retraining the back end does not rebuild the weights.

   Loaded with ctypes (no Python API is used); built by setup.py with AVX-512 and AVX2 + FMA versions and a
   portable one, the best the CPU runs picked at the first call (x86-64); plain C elsewhere. */

#include <stdint.h>
#include <string.h>

#define W 16
typedef float v16f __attribute__((vector_size(64)));
typedef uint16_t v16u __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
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

/* Portable version: GCC vector extensions (compiled for x86-64-v3 and baseline x86-64 on x86, the host elsewhere).
   On x86 it only runs where the CPU has neither AVX-512 nor AVX2 + FMA. */
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

#define LOAD_PX8(p) _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))))

__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* AVX2 + FMA: each 16-pixel segment as two 8-lane halves. */
__attribute__((target("avx2,fma")))
static void fused_avx2(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                       const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                       float *out) {
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t s0 = seg_ptr[o], s1 = seg_ptr[o + 1];
        const float sc = scale[o], bi = bias[o];
        int64_t b = 0;
        for (; b + 4 <= n_frames; b += 4) {
            const uint16_t *f0 = frames[b], *f1 = frames[b + 1], *f2 = frames[b + 2], *f3 = frames[b + 3];
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t s = s0; s < s1; s++) {
                const int64_t off = seg_off[s];
                for (int h = 0; h < W; h += 8) {
                    const __m256 w = _mm256_loadu_ps(seg_w + W * s + h);
                    a0 = _mm256_fmadd_ps(w, LOAD_PX8(f0 + off + h), a0);
                    a1 = _mm256_fmadd_ps(w, LOAD_PX8(f1 + off + h), a1);
                    a2 = _mm256_fmadd_ps(w, LOAD_PX8(f2 + off + h), a2);
                    a3 = _mm256_fmadd_ps(w, LOAD_PX8(f3 + off + h), a3);
                }
            }
            out[b * n_out + o] = sc * hsum256(a0) + bi;
            out[(b + 1) * n_out + o] = sc * hsum256(a1) + bi;
            out[(b + 2) * n_out + o] = sc * hsum256(a2) + bi;
            out[(b + 3) * n_out + o] = sc * hsum256(a3) + bi;
        }
        for (; b < n_frames; b++) {
            const uint16_t *f = frames[b];
            __m256 a = _mm256_setzero_ps();
            for (int64_t s = s0; s < s1; s++)
                for (int h = 0; h < W; h += 8)
                    a = _mm256_fmadd_ps(_mm256_loadu_ps(seg_w + W * s + h), LOAD_PX8(f + seg_off[s] + h), a);
            out[b * n_out + o] = sc * hsum256(a) + bi;
        }
    }
}

static kernel_fn pick(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return fused_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fused_avx2;
    return fused_generic;
}
#else
static kernel_fn pick(void) { return fused_generic; }
#endif

/* Which implementation runs on this CPU: 3 = AVX-512, 2 = AVX2 + FMA, 1 = portable C. */
int lab4f_fused_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    kernel_fn fn = pick();
    return fn == fused_avx512 ? 3 : fn == fused_avx2 ? 2 : 1;
#else
    return 1;
#endif
}

/* One named implementation whatever the CPU picks (tests hold them against each other): 3, 2 or 1 as above;
   returns -1 if this CPU cannot run it. */
int lab4f_fused_u16_isa(int isa, const uint16_t *const *frames, int64_t n_frames, int64_t n_out,
                        const int64_t *seg_ptr, const int64_t *seg_off, const float *seg_w, const float *scale,
                        const float *bias, float *out) {
    kernel_fn fn = fused_generic;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (isa == 3) {
        if (!__builtin_cpu_supports("avx512f")) return -1;
        fn = fused_avx512;
    } else if (isa == 2) {
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return -1;
        fn = fused_avx2;
    }
#else
    if (isa != 1) return -1;
#endif
    fn(frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
    return 0;
}

void lab4f_fused_u16(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                     const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                     float *out) {
    static kernel_fn fn = 0;
    if (!fn) fn = pick();
    fn(frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
}
