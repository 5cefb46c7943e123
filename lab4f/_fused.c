/* The fused hot path of live inference: camera frames (uint16) → the back end's pooled features.

   Everything from the camera pixels to the back end's pooled features is linear (dark/flat correction,
   bilinear tile sampling, k+ − k−, the per-tile filters, average pooling), so every pooled feature o is a
   weighted sum of the camera pixels under its tiles. lab4f.bench.fused builds those weights exactly and
   cuts each output's camera footprint into 16-pixel row segments; this kernel evaluates

       out[b, o] = scale[o] · Σ_s Σ_k w[s, k] · frame_b[off[s] + k] + bias[o],   s ∈ [ptr[o], ptr[o+1])

   reading the uint16 frames in place (no crop, no conversion pass, no transpose): one 16-lane load,
   widen and fused multiply-add per segment, four frames per weight load (independent accumulators). scale/bias carry the back end's
   eval-mode BatchNorm, so retraining the back end does not rebuild the weights.

   One loop, written once (KERNEL below), instantiated three times: AVX-512, AVX2 + FMA (a segment as two
   8-lane halves) and portable C (GCC vector extensions, baseline instructions); the best the CPU runs is picked
   at the first call. Loaded with ctypes (no Python API is used); built by setup.py. */

#include <stdint.h>
#include <string.h>

#define W 16 /* pixels per segment */

typedef void (*kernel_fn)(const uint16_t *const *, int64_t, int64_t, const int64_t *, const int64_t *,
                          const float *, const float *, const float *, float *);

int lab4f_fused_segment_width(void) { return W; }

/* The loop every version shares. VEC: accumulator type; ZERO: its zero; SEG(acc, w, px): acc += the segment at
   weights w (W floats) times pixels px (W uint16); HSUM(acc): its lanes summed. */
#define KERNEL(NAME, ATTR, VEC, ZERO, SEG, HSUM)                                                                \
    ATTR static void NAME(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr, \
                          const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,     \
                          float *out) {                                                                         \
        for (int64_t o = 0; o < n_out; o++) {                                                                   \
            const int64_t s0 = seg_ptr[o], s1 = seg_ptr[o + 1];                                                 \
            const float sc = scale[o], bi = bias[o];                                                            \
            int64_t b = 0;                                                                                      \
            for (; b + 4 <= n_frames; b += 4) { /* four frames per pass over the weights */                     \
                const uint16_t *f0 = frames[b], *f1 = frames[b + 1], *f2 = frames[b + 2], *f3 = frames[b + 3];  \
                VEC a0 = ZERO, a1 = ZERO, a2 = ZERO, a3 = ZERO;                                                 \
                for (int64_t s = s0; s < s1; s++) {                                                             \
                    const float *w = seg_w + W * s;                                                             \
                    const int64_t off = seg_off[s];                                                             \
                    SEG(a0, w, f0 + off);                                                                       \
                    SEG(a1, w, f1 + off);                                                                       \
                    SEG(a2, w, f2 + off);                                                                       \
                    SEG(a3, w, f3 + off);                                                                       \
                }                                                                                               \
                out[b * n_out + o] = sc * HSUM(a0) + bi;                                                        \
                out[(b + 1) * n_out + o] = sc * HSUM(a1) + bi;                                                  \
                out[(b + 2) * n_out + o] = sc * HSUM(a2) + bi;                                                  \
                out[(b + 3) * n_out + o] = sc * HSUM(a3) + bi;                                                  \
            }                                                                                                   \
            for (; b < n_frames; b++) {                                                                         \
                VEC a = ZERO;                                                                                   \
                for (int64_t s = s0; s < s1; s++) SEG(a, seg_w + W * s, frames[b] + seg_off[s]);                \
                out[b * n_out + o] = sc * HSUM(a) + bi;                                                         \
            }                                                                                                   \
        }                                                                                                       \
    }

/* --- portable C: GCC vector extensions ------------------------------------------------------------------ */
typedef float v16f __attribute__((vector_size(64)));
typedef uint16_t v16u __attribute__((vector_size(32)));

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

static inline __attribute__((always_inline)) float hsum(v16f a) { /* pairwise, as the AVX-512 reduce */
    float t[W];
    memcpy(t, &a, sizeof t);
    for (int n = W / 2; n > 0; n /= 2)
        for (int k = 0; k < n; k++) t[k] += t[k + n];
    return t[0];
}

#define SEG_PORTABLE(a, w, px) ((a) += load_w(w) * load_px(px))
static const v16f V16_ZERO = {0};
KERNEL(fused_portable, , v16f, V16_ZERO, SEG_PORTABLE, hsum)

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* --- AVX-512: one 512-bit widen + convert + FMA per segment ------------------------------------------------ */
#define PX16(p) _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))))
#define SEG_AVX512(a, w, px) ((a) = _mm512_fmadd_ps(_mm512_loadu_ps(w), PX16(px), (a)))
KERNEL(fused_avx512, __attribute__((target("avx512f"))), __m512, _mm512_setzero_ps(), SEG_AVX512,
       _mm512_reduce_add_ps)

/* --- AVX2 + FMA: a segment as two 8-lane halves --------------------------------------------------------- */
#define PX8(p) _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define SEG_AVX2(a, w, px)                                                                                      \
    ((a) = _mm256_fmadd_ps(_mm256_loadu_ps((w) + 8), PX8((px) + 8), _mm256_fmadd_ps(_mm256_loadu_ps(w), PX8(px), (a))))

__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
KERNEL(fused_avx2, __attribute__((target("avx2,fma"))), __m256, _mm256_setzero_ps(), SEG_AVX2, hsum8)

static int cpu_runs(int isa) {
    __builtin_cpu_init();
    if (isa == 3) return __builtin_cpu_supports("avx512f");
    if (isa == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return isa == 1;
}
static const kernel_fn KERNELS[4] = {0, fused_portable, fused_avx2, fused_avx512};
#else
static int cpu_runs(int isa) { return isa == 1; }
static const kernel_fn KERNELS[2] = {0, fused_portable};
#endif

/* Which implementation runs on this CPU: 3 = AVX-512, 2 = AVX2 + FMA, 1 = portable C. */
int lab4f_fused_isa(void) {
    int isa = (int)(sizeof KERNELS / sizeof KERNELS[0]) - 1;
    while (isa > 1 && !cpu_runs(isa)) isa--;
    return isa;
}

/* One named implementation whatever the CPU would pick (tests hold them against each other): 3, 2 or 1 as
   above; returns -1, computing nothing, if this CPU (or build) cannot run it. */
int lab4f_fused_u16_isa(int isa, const uint16_t *const *frames, int64_t n_frames, int64_t n_out,
                        const int64_t *seg_ptr, const int64_t *seg_off, const float *seg_w, const float *scale,
                        const float *bias, float *out) {
    if (isa < 1 || isa >= (int)(sizeof KERNELS / sizeof KERNELS[0]) || !cpu_runs(isa)) return -1;
    KERNELS[isa](frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
    return 0;
}

/* The best implementation this CPU runs (chosen at the first call). */
void lab4f_fused_u16(const uint16_t *const *frames, int64_t n_frames, int64_t n_out, const int64_t *seg_ptr,
                     const int64_t *seg_off, const float *seg_w, const float *scale, const float *bias,
                     float *out) {
    static kernel_fn fn = 0;
    if (!fn) fn = KERNELS[lab4f_fused_isa()];
    fn(frames, n_frames, n_out, seg_ptr, seg_off, seg_w, scale, bias, out);
}
