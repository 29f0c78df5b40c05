/*
 * dispatch.c - CPU dispatch: which paths this CPU runs, the process default
 * path, and what each path runs (scalar compressions, lane kernels).
 */
#include <stdatomic.h>

#include "core_internal.h"

/* CPU feature bits; FEAT_PROBED marks the probe as done. */
enum { FEAT_PROBED = 1, FEAT_SHANI = 2, FEAT_AVX2 = 4, FEAT_AVX512 = 8, FEAT_AVX512BW = 16 };

#if TOTPD_HAVE_X86_SIMD
#include <cpuid.h>

/* SHA-NI with the SSE levels its code uses; AVX-512 means F and VL, and BW
 * on top for the zmm kernels. */
static int probe_features(void) {
    int f = 0;
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1u) &&
        __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3"))
        f |= FEAT_SHANI;
    if (__builtin_cpu_supports("avx2")) f |= FEAT_AVX2;
    if ((f & FEAT_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        f |= FEAT_AVX512;
    if ((f & FEAT_AVX512) && __builtin_cpu_supports("avx512bw")) f |= FEAT_AVX512BW;
    return f;
}

/* The lane kernels. A short last group of a 16 (8) lane zmm kernel runs
 * scalar: one SHA-NI stream beats a mostly idle 16-lane SHA-1 kernel below
 * 5 lanes, and the portable SHA-512 beats the 8-lane one on a single lane
 * (benchmarks/core keeps these numbers in step: SCALAR_TAIL_*). */
static const totpd_lane_kernel kSha1Avx2 = {
    8, 0, 0, 64, totpd_sha1_verify_x8_avx2, totpd_sha1_prepare_x8_avx2};
static const totpd_lane_kernel kSha1Avx512 = {
    8, 0, 0, 64, totpd_sha1_verify_x8_avx512, totpd_sha1_prepare_x8_avx512};
static const totpd_lane_kernel kSha1Zmm = {
    16, 4, 1, 64, totpd_sha1_verify_x16, totpd_sha1_prepare_x16};
static const totpd_lane_kernel kSha512Zmm = {
    8, 1, 1, 128, totpd_sha512_verify_x8, totpd_sha512_prepare_x8};

/* Scalar SHA-1 (pad states, totpd_hotp, short tails) and SHA-256 use SHA-NI
 * on every SIMD path where the CPU has it: separate functions from the lane
 * kernels, so no AVX/SHA-NI mixing in one loop. */
static void simd_impl(int path, int shani, totpd_impl *im) {
    if (path != TOTPD_PATH_PORTABLE && shani) {
        im->sha1 = totpd_sha1_compress_shani;
        im->sha256 = totpd_sha256_compress_shani;
    }
    if (path == TOTPD_PATH_AVX2) {
        im->lanes[TOTPD_ALG_SHA1 - 1] = &kSha1Avx2;
    } else if (path == TOTPD_PATH_AVX512) {
        im->lanes[TOTPD_ALG_SHA1 - 1] = &kSha1Avx512;
    } else if (path == TOTPD_PATH_AVX512X16) {
        im->lanes[TOTPD_ALG_SHA1 - 1] = &kSha1Zmm;
        im->lanes[TOTPD_ALG_SHA512 - 1] = &kSha512Zmm;
    }
}
#else
static int probe_features(void) { return 0; }
static void simd_impl(int path, int shani, totpd_impl *im) {
    (void)path;
    (void)shani;
    (void)im;
}
#endif

/* Probed once: CPUID traps to the hypervisor in a VM, far too slow per call. */
static atomic_int g_cpu_features = 0;

static int has(int feature) {
    int f = atomic_load_explicit(&g_cpu_features, memory_order_relaxed);
    if (!f) {
        f = FEAT_PROBED | probe_features();
        atomic_store_explicit(&g_cpu_features, f, memory_order_relaxed);
    }
    return (f & feature) != 0;
}

int totpd_path_supported(int path) {
    switch (path) {
        case TOTPD_PATH_AUTO:
        case TOTPD_PATH_PORTABLE: return 1;
        case TOTPD_PATH_SHANI: return has(FEAT_SHANI);
        case TOTPD_PATH_AVX2: return has(FEAT_AVX2);
        case TOTPD_PATH_AVX512: return has(FEAT_AVX512);
        case TOTPD_PATH_AVX512X16: return has(FEAT_AVX512BW);
        default: return 0;
    }
}

/* The fastest path this CPU runs, widest lanes first (benchmarks/NOTES.md). */
static int best_path(void) {
    if (has(FEAT_AVX512BW)) return TOTPD_PATH_AVX512X16;
    if (has(FEAT_AVX512)) return TOTPD_PATH_AVX512;
    if (has(FEAT_AVX2)) return TOTPD_PATH_AVX2;
    if (has(FEAT_SHANI)) return TOTPD_PATH_SHANI;
    return TOTPD_PATH_PORTABLE;
}

static atomic_int g_default_path = 0; /* 0: not chosen yet, resolves to auto */

/* path itself, AUTO resolved; 0 if unknown or not supported here. */
static int concrete(int path) {
    if (path == TOTPD_PATH_AUTO) path = best_path();
    if (path < TOTPD_PATH_PORTABLE || path > TOTPD_PATH_AVX512X16 || !totpd_path_supported(path))
        return 0;
    return path;
}

int totpd_set_default_path(int path) {
    path = concrete(path);
    if (!path) return TOTPD_ERR_PATH;
    atomic_store(&g_default_path, path);
    return TOTPD_OK;
}

int totpd_default_path(void) {
    int p = atomic_load(&g_default_path);
    if (p == 0) {
        p = best_path();
        int expected = 0;
        atomic_compare_exchange_strong(&g_default_path, &expected, p);
        p = atomic_load(&g_default_path);
    }
    return p;
}

int totpd_resolve_impl(int path, totpd_impl *im) {
    path = concrete(path < 0 ? totpd_default_path() : path);
    if (!path) return TOTPD_ERR_PATH;
    im->sha1 = totpd_sha1_compress_portable;
    im->sha256 = totpd_sha256_compress_portable;
    for (int a = 0; a < TOTPD_N_ALGS; a++) im->lanes[a] = NULL;
    simd_impl(path, has(FEAT_SHANI), im);
    return TOTPD_OK;
}
