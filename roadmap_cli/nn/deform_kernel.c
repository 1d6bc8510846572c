/* Fused deformable sampling on the CPU, channels-last (roadmap_cli/nn/fused.py builds and calls this).
 *
 * One operator serves DCNv3 and the strip-deformable conv: for every output pixel o = (b, i, j) and channel
 * group g, sum over P points p of  mask[o, g, p] * bilinear(x[b, :, :, g*Cg:(g+1)*Cg], pos[o, g, p])
 * where pos = (u, v) is in pixel-index coordinates (u along W, v along H), a corner outside the image counts as
 * zero (grid_sample's padding_mode="zeros", align_corners=False, in pixel units) and mask may be absent (1).
 *
 * deform_forward / deform_backward take the positions and the mask ready made (float32).  The inference entry
 * points deform_infer_f32 / deform_infer_bf16 build them on the fly instead, from a shape-only base grid (float32)
 * plus the learned offsets times a scale, and the mask from its logits by a softmax over the P points, so neither
 * is ever written to memory; the _bf16 one reads and writes bfloat16 (x, offsets, logits, out; float32 sums).
 *
 * Layouts (all float32, C-contiguous):  x, out, grad_out, grad_x: (B, H, W, C);  pos, grad_pos: (B, H, W, G, P, 2);
 * mask, grad_mask: (B, H, W, G, P).  The caller splits the work into ranges and runs them on several threads:
 * forward over output rows r = b*H + i (each writes only its own rows), backward over tasks t = b*G + g (each
 * writes only its own channel slice of grad_x and its own entries of grad_pos / grad_mask), so no two threads
 * write the same memory and the result does not depend on the number of threads.
 *
 * dysample_infer_f32 / dysample_infer_bf16 (at the end) are DySample's upsampling in inference: positions from
 * the raw offsets on the fly, border padding, optionally the sum over channels plus a bias (the output head).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Corners of the bilinear footprint: index (into the (H, W) plane) and weight, -1 where outside. */
static inline int footprint(float u, float v, int64_t H, int64_t W, int64_t idx[4], float wt[4], float *ax,
                            float *ay) {
    /* u == -1 samples nothing (weight 0 on the one in-image corner) but, as in grid_sample, has a gradient */
    if (!(u >= -1.0f && u < (float)W && v >= -1.0f && v < (float)H)) return 0; /* also false for NaN */
    float fu = floorf(u), fv = floorf(v);
    int64_t x0 = (int64_t)fu, y0 = (int64_t)fv;
    float a = u - fu, c = v - fv;
    *ax = a;
    *ay = c;
    wt[0] = (1.0f - a) * (1.0f - c);
    wt[1] = a * (1.0f - c);
    wt[2] = (1.0f - a) * c;
    wt[3] = a * c;
    int vx0 = x0 >= 0, vx1 = x0 + 1 < W, vy0 = y0 >= 0, vy1 = y0 + 1 < H;
    idx[0] = (vx0 && vy0) ? y0 * W + x0 : -1;
    idx[1] = (vx1 && vy0) ? y0 * W + x0 + 1 : -1;
    idx[2] = (vx0 && vy1) ? (y0 + 1) * W + x0 : -1;
    idx[3] = (vx1 && vy1) ? (y0 + 1) * W + x0 + 1 : -1;
    return 1;
}

void deform_forward(const float *x, const float *pos, const float *mask, float *out, int64_t H, int64_t W,
                    int64_t C, int64_t G, int64_t P, int64_t row0, int64_t row1) {
    const int64_t Cg = C / G;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t b = r / H;
        const float *xb = x + b * H * W * C;
        for (int64_t j = 0; j < W; j++) {
            const int64_t o = r * W + j;
            float *op = out + o * C;
            memset(op, 0, (size_t)C * sizeof(float));
            for (int64_t g = 0; g < G; g++) {
                float *og = op + g * Cg;
                const float *xg = xb + g * Cg;
                for (int64_t p = 0; p < P; p++) {
                    const int64_t q = (o * G + g) * P + p;
                    int64_t idx[4];
                    float wt[4], ax, ay;
                    if (!footprint(pos[2 * q], pos[2 * q + 1], H, W, idx, wt, &ax, &ay)) continue;
                    const float m = mask ? mask[q] : 1.0f;
                    for (int k = 0; k < 4; k++) {
                        const float w = wt[k] * m;
                        if (idx[k] < 0 || w == 0.0f) continue;
                        const float *src = xg + idx[k] * C;
#pragma omp simd
                        for (int64_t c = 0; c < Cg; c++) og[c] += w * src[c];
                    }
                }
            }
        }
    }
}

void deform_backward(const float *x, const float *pos, const float *mask, const float *grad_out, float *grad_x,
                     float *grad_pos, float *grad_mask, int64_t B, int64_t H, int64_t W, int64_t C, int64_t G,
                     int64_t P, int64_t task0, int64_t task1) {
    (void)B;
    const int64_t Cg = C / G;
    const int need_dots = grad_pos != 0 || grad_mask != 0;
    for (int64_t t = task0; t < task1; t++) {
        const int64_t b = t / G, g = t % G;
        const float *xg = x + b * H * W * C + g * Cg;
        float *gxg = grad_x ? grad_x + b * H * W * C + g * Cg : 0;
        for (int64_t i = 0; i < H; i++) {
            for (int64_t j = 0; j < W; j++) {
                const int64_t o = (b * H + i) * W + j;
                const float *go = grad_out + o * C + g * Cg;
                for (int64_t p = 0; p < P; p++) {
                    const int64_t q = (o * G + g) * P + p;
                    int64_t idx[4];
                    float wt[4], ax, ay;
                    if (!footprint(pos[2 * q], pos[2 * q + 1], H, W, idx, wt, &ax, &ay)) continue;
                    const float m = mask ? mask[q] : 1.0f;
                    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    for (int k = 0; k < 4; k++) {
                        if (idx[k] < 0) continue;
                        if (need_dots) {
                            const float *src = xg + idx[k] * C;
                            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                            for (int64_t c = 0; c < Cg; c++) acc += go[c] * src[c];
                            s[k] = acc;
                        }
                        const float w = wt[k] * m;
                        if (gxg && w != 0.0f) {
                            float *dst = gxg + idx[k] * C;
#pragma omp simd
                            for (int64_t c = 0; c < Cg; c++) dst[c] += w * go[c];
                        }
                    }
                    if (grad_mask) grad_mask[q] = wt[0] * s[0] + wt[1] * s[1] + wt[2] * s[2] + wt[3] * s[3];
                    if (grad_pos) {
                        grad_pos[2 * q] = m * ((1.0f - ay) * (s[1] - s[0]) + ay * (s[3] - s[2]));
                        grad_pos[2 * q + 1] = m * ((1.0f - ax) * (s[2] - s[0]) + ax * (s[3] - s[1]));
                    }
                }
            }
        }
    }
}

/* ---- inference: positions and softmax mask built on the fly, float32 or bfloat16 storage ---- */

static inline float bf16_to_f32(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                           /* round to nearest even */
    return (uint16_t)(u >> 16);
}

#define LOAD_F32(v) (v)
#define STORE_F32(v) (v)

/* ag[c] += EXPR for c < Cg, with the channel-group widths the models use (8, 16, 32, 64) as compile-time trip
 * counts, so that each becomes a fixed run of vector instructions; the bilinear corners of one point are summed in
 * one pass over the accumulator (one load and store of it instead of one per corner). */
#define ACC_LOOP(N, EXPR)                                                                                          \
    {                                                                                                              \
        _Pragma("omp simd") for (int64_t c = 0; c < (N); c++) ag[c] += EXPR;                                       \
    }
#define ACC_SWITCH(EXPR)                                                                                           \
    switch (Cg) {                                                                                                  \
    case 8: ACC_LOOP(8, EXPR) break;                                                                               \
    case 16: ACC_LOOP(16, EXPR) break;                                                                             \
    case 32: ACC_LOOP(32, EXPR) break;                                                                             \
    case 64: ACC_LOOP(64, EXPR) break;                                                                             \
    default: ACC_LOOP(Cg, EXPR)                                                                                    \
    }

/* expf for the softmax (x <= 0 there), written so that a loop over points vectorises: Cody-Waite range reduction
 * to r in [-ln2/2, ln2/2], Cephes' degree-7 polynomial, 2^n through the exponent bits.  Within 2 ulp of expf on
 * [-87, 0]; below -87 it returns 2^-126 instead of a denormal or 0 (a weight of 1e-38 next to one of >= 1/P). */
static inline float exp_simd(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t e = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &e, sizeof two_n);
    return p * two_n;
}

/* Phase one of DEFINE_INFER for one pixel: every point's four bilinear corners (element offset into the group's
 * plane, -1 outside the image) and weights (mask folded in, all 0 for a point outside), in loops the compiler
 * vectorises: no branches, no library calls (floor and clamps by hand); one copy per offset mode. */
#define POINT_LOOP(UEXPR, VEXPR)                                                                                       \
    for (int64_t g = 0; g < G; g++) {                                                                                  \
        _Pragma("omp simd") for (int64_t p = 0; p < P; p++) {                                                          \
            const int64_t q = g * P + p;                                                                               \
            const float u = (UEXPR), v = (VEXPR);                                                                      \
            /* u == -1 samples nothing; false for NaN too */                                                           \
            const int inside = (u >= -1.0f) & (u < fW) & (v >= -1.0f) & (v < fH);                                      \
            /* clamped so that the conversions below are defined for every lane (NaN -> -2) */                         \
            const float u1 = u > -2.0f ? u : -2.0f, v1 = v > -2.0f ? v : -2.0f;                                        \
            const float uc = u1 < fW ? u1 : fW, vc = v1 < fH ? v1 : fH;                                                \
            const float tu = (float)(int32_t)uc, tv = (float)(int32_t)vc;                                              \
            const float fu = tu > uc ? tu - 1.0f : tu, fv = tv > vc ? tv - 1.0f : tv; /* floor */                      \
            const int64_t x0 = (int64_t)fu, y0 = (int64_t)fv;                                                          \
            const float a = uc - fu, c = vc - fv;                                                                      \
            const float mq = mw[q];                                                                                    \
            const float m = inside ? mq : 0.0f;                                                                        \
            w0[q] = m * (1.0f - a) * (1.0f - c);                                                                       \
            w1[q] = m * a * (1.0f - c);                                                                                \
            w2[q] = m * (1.0f - a) * c;                                                                                \
            w3[q] = m * a * c;                                                                                         \
            const int vx0 = x0 >= 0, vx1 = x0 + 1 < W, vy0 = y0 >= 0, vy1 = y0 + 1 < H;                                \
            const int64_t e00 = (y0 * W + x0) * C;                                                                     \
            i0[q] = (vx0 & vy0) ? e00 : -1;                                                                            \
            i1[q] = (vx1 & vy0) ? e00 + C : -1;                                                                        \
            i2[q] = (vx0 & vy1) ? e00 + W * C : -1;                                                                    \
            i3[q] = (vx1 & vy1) ? e00 + W * C + C : -1;                                                                \
        }                                                                                                              \
    }

/* mode 0: DCNv3, offsets (B, H, W, G, P, 2) as (dx, dy);  mode 1 / 2: strip along x / y, offsets (B, H, W, G, P)
 * added to u / v.  base: (H, W, P, 2) float32 pixel positions for zero offsets.  pos = base + scale * offset.
 * logits: (B, H, W, G, P) or NULL (weights 1).
 * Per output pixel, in two passes: first, for all G*P points at once (loops the compiler vectorises, no branches),
 * the softmax weights, positions, and the four bilinear corners of each point as an element offset into x (-1
 * outside the image) and a weight (mask folded in, 0 for a point outside);  then the weighted corner sums into a
 * float32 accumulator of C channels, corners outside the image read from a row of zeros (so, as in grid_sample's
 * zero padding, a non-finite value at some other pixel never enters). */
#define DEFINE_INFER(NAME, T, LOAD, STORE)                                                                        \
    void NAME(const T *x, const T *off, const float *base, float scale, int64_t mode, const T *logits, T *out,     \
              int64_t H, int64_t W, int64_t C, int64_t G, int64_t P, int64_t row0, int64_t row1) {                 \
        const int64_t Cg = C / G, GP = G * P;                                                                      \
        const int64_t per_pt = mode == 0 ? 2 : 1;                                                                  \
        const float fW = (float)W, fH = (float)H;                                                                  \
        float acc[C];                                                                                              \
        T zrow[Cg];                                                                                                \
        memset(zrow, 0, sizeof zrow); /* all-zero bits: +0.0 in float32 and in bfloat16 */                         \
        float mw[GP], w0[GP], w1[GP], w2[GP], w3[GP];                                                              \
        int64_t i0[GP], i1[GP], i2[GP], i3[GP];                                                                    \
        if (!logits)                                                                                               \
            for (int64_t q = 0; q < GP; q++) mw[q] = 1.0f;                                                         \
        for (int64_t r = row0; r < row1; r++) {                                                                    \
            const int64_t b = r / H, i = r % H;                                                                    \
            const T *xb = x + b * H * W * C;                                                                       \
            for (int64_t j = 0; j < W; j++) {                                                                      \
                const int64_t o = r * W + j;                                                                       \
                const float *bp = base + (i * W + j) * P * 2;                                                      \
                const T *op = off + o * GP * per_pt;                                                               \
                if (logits) {                                                                                      \
                    const T *lp = logits + o * GP;                                                                 \
                    for (int64_t g = 0; g < G; g++) {                                                              \
                        float mx = -INFINITY, sum = 0.0f;                                                          \
                        for (int64_t p = 0; p < P; p++) {                                                          \
                            const float l = LOAD(lp[g * P + p]);                                                   \
                            mx = l > mx ? l : mx;                                                                  \
                        }                                                                                          \
                        _Pragma("omp simd reduction(+ : sum)") for (int64_t p = 0; p < P; p++) {                   \
                            const float e = exp_simd(LOAD(lp[g * P + p]) - mx);                                    \
                            mw[g * P + p] = e;                                                                     \
                            sum += e;                                                                              \
                        }                                                                                          \
                        const float inv = 1.0f / sum;                                                              \
                        _Pragma("omp simd") for (int64_t p = 0; p < P; p++) mw[g * P + p] *= inv;                  \
                    }                                                                                              \
                }                                                                                                  \
                switch (mode) {                                                                                    \
                case 0:                                                                                            \
                    POINT_LOOP(bp[2 * p] + scale * LOAD(op[2 * q]), bp[2 * p + 1] + scale * LOAD(op[2 * q + 1]))   \
                    break;                                                                                         \
                case 1: POINT_LOOP(bp[2 * p] + scale * LOAD(op[q]), bp[2 * p + 1]) break;                           \
                default: POINT_LOOP(bp[2 * p], bp[2 * p + 1] + scale * LOAD(op[q]))                                 \
                }                                                                                                  \
                memset(acc, 0, (size_t)C * sizeof(float));                                                         \
                for (int64_t g = 0; g < G; g++) {                                                                  \
                    float *ag = acc + g * Cg;                                                                      \
                    const T *xg = xb + g * Cg;                                                                     \
                    for (int64_t q = g * P; q < (g + 1) * P; q++) {                                                \
                        if (w0[q] == 0.0f && w1[q] == 0.0f && w2[q] == 0.0f && w3[q] == 0.0f) continue;            \
                        const T *s0 = i0[q] >= 0 ? xg + i0[q] : zrow, *s1 = i1[q] >= 0 ? xg + i1[q] : zrow;        \
                        const T *s2 = i2[q] >= 0 ? xg + i2[q] : zrow, *s3 = i3[q] >= 0 ? xg + i3[q] : zrow;        \
                        const float a0 = w0[q], a1 = w1[q], a2 = w2[q], a3 = w3[q];                                \
                        ACC_SWITCH(a0 * LOAD(s0[c]) + a1 * LOAD(s1[c]) + a2 * LOAD(s2[c]) + a3 * LOAD(s3[c]))      \
                    }                                                                                              \
                }                                                                                                  \
                T *dst = out + o * C;                                                                              \
                _Pragma("omp simd") for (int64_t c = 0; c < C; c++) dst[c] = STORE(acc[c]);                        \
            }                                                                                                      \
        }                                                                                                          \
    }

DEFINE_INFER(deform_infer_f32, float, LOAD_F32, STORE_F32)
DEFINE_INFER(deform_infer_bf16, uint16_t, bf16_to_f32, f32_to_bf16)

/* ---- DySample (lp style) upsampling, inference: positions built on the fly, border padding ----
 *
 * x: (B, C, H, W) at element strides (sb, sc, sh, sw) (channel-first or channels-last memory);  off: the raw
 * offset-conv output (B, 2*G*S*S, H, W) at strides (ob_, oc, oh, ow), x block then y block, each [group][row][col];
 * out: (B, C, S*H, S*W) at strides (yb, yc, yh, yw), or (B, 1, S*H, S*W) with reduce != 0 (the sum over all C
 * channels plus bias).
 * Output pixel (I, J) = (S*i + di, S*j + dj) of group g samples x at pixel-index position
 *   u = j + off_scale * off[b, g*S*S + di*S + dj, i, j] + (dj - (S-1)/2) / S   (v likewise with the y block, i, di)
 * clamped to [0, W-1] x [0, H-1] (grid_sample's padding_mode="border", align_corners=False), bilinear.
 * Rows R = b*S*H + I are split across threads; each writes only its own output rows. */
#define DEFINE_DYSAMPLE(NAME, T, LOAD, STORE)                                                                     \
    void NAME(const T *x, const T *off, float off_scale, T *out, float bias, int64_t reduce, int64_t sb,          \
              int64_t sc, int64_t sh, int64_t sw, int64_t ob_, int64_t oc, int64_t oh, int64_t ow, int64_t yb,     \
              int64_t yc, int64_t yh, int64_t yw, int64_t H, int64_t W, int64_t C, int64_t G, int64_t S,           \
              int64_t row0, int64_t row1) {                                                                        \
        const int64_t Cg = C / G, SS = S * S, OH = S * H, OW = S * W;                                              \
        const float half = 0.5f * (float)(S - 1), umax = (float)(W - 1), vmax = (float)(H - 1);                   \
        float red[OW];                                                                                             \
        for (int64_t r = row0; r < row1; r++) {                                                                    \
            const int64_t b = r / OH, I = r % OH, i = I / S, di = I % S;                                           \
            const T *xb = x + b * sb;                                                                              \
            const T *ob = off + b * ob_ + i * oh;                                                                  \
            const float v0 = (float)i + ((float)di - half) / (float)S;                                             \
            if (reduce)                                                                                            \
                for (int64_t J = 0; J < OW; J++) red[J] = bias;                                                    \
            for (int64_t g = 0; g < G; g++) {                                                                      \
                for (int64_t dj = 0; dj < S; dj++) {                                                               \
                    const int64_t k = g * SS + di * S + dj;                                                        \
                    const T *oxp = ob + k * oc, *oyp = ob + (G * SS + k) * oc;                                     \
                    const float u0 = ((float)dj - half) / (float)S;                                                \
                    for (int64_t j = 0; j < W; j++) {                                                              \
                        float u = (float)j + u0 + off_scale * LOAD(oxp[j * ow]);                                   \
                        float v = v0 + off_scale * LOAD(oyp[j * ow]);                                              \
                        u = u > 0.0f ? (u < umax ? u : umax) : 0.0f; /* NaN samples pixel 0 */                    \
                        v = v > 0.0f ? (v < vmax ? v : vmax) : 0.0f;                                               \
                        const int64_t x0 = (int64_t)u, y0 = (int64_t)v; /* u, v >= 0: truncation is floor */      \
                        const int64_t x1 = x0 + 1 < W ? x0 + 1 : x0, y1 = y0 + 1 < H ? y0 + 1 : y0;                \
                        const float a = u - (float)x0, c = v - (float)y0;                                          \
                        const float w00 = (1.0f - a) * (1.0f - c), w01 = a * (1.0f - c), w10 = (1.0f - a) * c,     \
                                    w11 = a * c;                                                                   \
                        const T *p00 = xb + y0 * sh + x0 * sw, *p01 = xb + y0 * sh + x1 * sw;                      \
                        const T *p10 = xb + y1 * sh + x0 * sw, *p11 = xb + y1 * sh + x1 * sw;                      \
                        const int64_t J = j * S + dj;                                                              \
                        if (reduce) {                                                                              \
                            float total = 0.0f;                                                                    \
                            for (int64_t q = g * Cg * sc; q < (g + 1) * Cg * sc; q += sc)                          \
                                total += w00 * LOAD(p00[q]) + w01 * LOAD(p01[q]) + w10 * LOAD(p10[q]) +            \
                                         w11 * LOAD(p11[q]);                                                       \
                            red[J] += total;                                                                       \
                        } else {                                                                                   \
                            for (int64_t cc = g * Cg; cc < (g + 1) * Cg; cc++) {                                   \
                                const int64_t q = cc * sc;                                                         \
                                out[b * yb + cc * yc + I * yh + J * yw] =                                          \
                                    STORE(w00 * LOAD(p00[q]) + w01 * LOAD(p01[q]) + w10 * LOAD(p10[q]) +           \
                                          w11 * LOAD(p11[q]));                                                     \
                            }                                                                                      \
                        }                                                                                          \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            if (reduce)                                                                                            \
                for (int64_t J = 0; J < OW; J++) out[b * yb + I * yh + J * yw] = STORE(red[J]);                  \
        }                                                                                                          \
    }

DEFINE_DYSAMPLE(dysample_infer_f32, float, LOAD_F32, STORE_F32)
DEFINE_DYSAMPLE(dysample_infer_bf16, uint16_t, bf16_to_f32, f32_to_bf16)

/* ---- threading: one OpenMP team per call ----
 *
 * NAME_par(args..., total, nthreads) runs NAME(args..., start, stop) on nthreads threads over [0, total), thread t
 * taking [total*t/n, total*(t+1)/n): the same split as the ctypes thread pool in fused.py, so the same bits.  Built
 * with -fopenmp the calls run on the OpenMP runtime already loaded in the process (torch's libgomp, same soname),
 * so no second pool spins against torch's between ops; without OpenMP (kernel_has_openmp() == 0) fused.py splits
 * the work on its own threads instead. */
#ifdef _OPENMP
#include <omp.h>
int kernel_has_openmp(void) { return 1; }
#define PAR_RANGE(CALL)                                                                                            \
    _Pragma("omp parallel num_threads((int)nthreads)") {                                                           \
        const int64_t n_ = omp_get_num_threads(), t_ = omp_get_thread_num();                                       \
        const int64_t start = total * t_ / n_, stop = total * (t_ + 1) / n_;                                       \
        CALL;                                                                                                      \
    }
#else
int kernel_has_openmp(void) { return 0; }
#define PAR_RANGE(CALL)                                                                                            \
    {                                                                                                              \
        (void)nthreads;                                                                                            \
        const int64_t start = 0, stop = total;                                                                     \
        CALL;                                                                                                      \
    }
#endif

void deform_forward_par(const float *x, const float *pos, const float *mask, float *out, int64_t H, int64_t W,
                        int64_t C, int64_t G, int64_t P, int64_t total, int64_t nthreads) {
    PAR_RANGE(deform_forward(x, pos, mask, out, H, W, C, G, P, start, stop))
}

void deform_backward_par(const float *x, const float *pos, const float *mask, const float *grad_out, float *grad_x,
                         float *grad_pos, float *grad_mask, int64_t B, int64_t H, int64_t W, int64_t C, int64_t G,
                         int64_t P, int64_t total, int64_t nthreads) {
    PAR_RANGE(deform_backward(x, pos, mask, grad_out, grad_x, grad_pos, grad_mask, B, H, W, C, G, P, start, stop))
}

#define DEFINE_INFER_PAR(NAME, T)                                                                                 \
    void NAME##_par(const T *x, const T *off, const float *base, float scale, int64_t mode, const T *logits,      \
                    T *out, int64_t H, int64_t W, int64_t C, int64_t G, int64_t P, int64_t total,                  \
                    int64_t nthreads) {                                                                            \
        PAR_RANGE(NAME(x, off, base, scale, mode, logits, out, H, W, C, G, P, start, stop))                        \
    }
DEFINE_INFER_PAR(deform_infer_f32, float)
DEFINE_INFER_PAR(deform_infer_bf16, uint16_t)

#define DEFINE_DYSAMPLE_PAR(NAME, T)                                                                              \
    void NAME##_par(const T *x, const T *off, float off_scale, T *out, float bias, int64_t reduce, int64_t sb,    \
                    int64_t sc, int64_t sh, int64_t sw, int64_t ob_, int64_t oc, int64_t oh, int64_t ow,           \
                    int64_t yb, int64_t yc, int64_t yh, int64_t yw, int64_t H, int64_t W, int64_t C, int64_t G,    \
                    int64_t S, int64_t total, int64_t nthreads) {                                                  \
        PAR_RANGE(NAME(x, off, off_scale, out, bias, reduce, sb, sc, sh, sw, ob_, oc, oh, ow, yb, yc, yh, yw, H, W, \
                       C, G, S, start, stop))                                                                      \
    }
DEFINE_DYSAMPLE_PAR(dysample_infer_f32, float)
DEFINE_DYSAMPLE_PAR(dysample_infer_bf16, uint16_t)
