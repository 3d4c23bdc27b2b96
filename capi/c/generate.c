/*
 * charlm from C: the host version of what a firmware does with the library.
 *
 *   generate MODEL.clm PROMPT TEMPERATURE SEED MAX_CHARS [TOP_K TOP_P]
 *   generate --info MODEL.clm
 *
 * prints exactly what
 *   charlm generate --model MODEL.clm --prompt PROMPT --temperature T
 *                   --seed S --max-chars N [--top-k K --top-p P]
 * prints (temperature 0 is greedy, as on that command line), and refuses
 * what that command refuses: on an error it prints one line on stderr
 * (charlm's description of a status, or the argument that is wrong) and
 * exits with status 2.
 *
 * Build (capi/tests/c_program.rs does this):
 *   cargo build -p charlm-c --release
 *   cc -std=c99 -I capi/include capi/c/generate.c target/release/libcharlm.a \
 *      -lpthread -ldl -lm -o generate
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charlm.h"

/* Streams each character to stdout as the library produces it. */
static int write_text(void *ctx, const char *text, size_t len) {
    /* A stream that fails ends the text (nonzero): nothing more would show. */
    return fwrite(text, 1, len, (FILE *)ctx) != len;
}

/* The whole file in memory (on a device the model is an array in flash). */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            break;
        }
    }
    fclose(f);
    return buf;
}

static int fail(int32_t status) {
    fprintf(stderr, "charlm: %s\n", charlm_status_text(status));
    return 2;
}

/* ARG as a whole number from 0 to MAX (digits, after an optional '+', as
 * the command line reads it), or 0 after a line on stderr naming it. */
static int whole(const char *name, const char *arg, unsigned long long max,
                 unsigned long long *out) {
    char *end = NULL;
    const char *digits = arg[0] == '+' ? arg + 1 : arg;
    errno = 0;
    *out = digits[0] >= '0' && digits[0] <= '9' ? strtoull(digits, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno == ERANGE || *out > max) {
        fprintf(stderr, "charlm: %s %s: must be a whole number from 0 to %llu\n", name, arg, max);
        return 0;
    }
    return 1;
}

/* ARG as a finite float, or 0 after a line on stderr naming it (decimal
 * only, as the command line reads it: no leading space, no hexadecimal). */
static int number(const char *name, const char *arg, float *out) {
    char *end = NULL;
    *out = strtof(arg, &end);
    if (end == arg || *end != '\0' || !isfinite(*out) || arg[0] == ' ' || arg[0] == '\t'
        || strpbrk(arg, "xX") != NULL) {
        fprintf(stderr, "charlm: %s %s: must be a finite number\n", name, arg);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    int info_only = argc == 3 && strcmp(argv[1], "--info") == 0;
    if (!info_only && argc != 6 && argc != 8) {
        fprintf(stderr, "usage: %s MODEL.clm PROMPT TEMPERATURE SEED MAX_CHARS [TOP_K TOP_P]\n"
                        "       %s --info MODEL.clm\n", argv[0], argv[0]);
        return 2;
    }
    const char *path = argv[info_only ? 2 : 1];
    size_t model_len = 0;
    unsigned char *model = read_file(path, &model_len);
    if (!model) {
        fprintf(stderr, "charlm: cannot read %s\n", path);
        return 2;
    }

    charlm_info info;
    int32_t status = charlm_model_info(model, model_len, &info);
    if (info_only) {
        if (status != CHARLM_OK && status != CHARLM_ERR_TOO_LARGE) {
            free(model);
            return fail(status);
        }
        uint32_t hidden = 0, layers = 0, vocab = 0;
        charlm_capacity(&hidden, &layers, &vocab);
        printf("%s %u layer(s) hidden %u vocab %u %s, %u MAC/char, workspace %u bytes; fits %ux%u/%u: %s\n",
               info.cell == CHARLM_LSTM ? "LSTM" : "GRU", info.layers, info.hidden, info.vocab,
               info.weights == CHARLM_F16 ? "f16" : "i8", info.macs_per_char, info.workspace_bytes,
               layers, hidden, vocab, status == CHARLM_OK ? "yes" : "no");
        free(model);
        return 0;
    }

    charlm_params params;
    memset(&params, 0, sizeof params);
    unsigned long long seed = 0, max_chars = 0, top_k = 0;
    float top_p = 1.0f;
    int ok = number("TEMPERATURE", argv[3], &params.temperature)
             && whole("SEED", argv[4], 18446744073709551615ULL, &seed)
             && whole("MAX_CHARS", argv[5], 2147483647ULL, &max_chars)
             && (argc != 8 || (whole("TOP_K", argv[6], 65535ULL, &top_k)
                               && number("TOP_P", argv[7], &top_p)));
    if (ok && params.temperature == 0.0f && !(top_p > 0.0f && top_p <= 1.0f)) {
        /* Greedy reads no top-p (sampling checks it in the library), but the
         * command line refuses a bad one anyway. */
        fprintf(stderr, "charlm: TOP_P %s: must be above 0 and at most 1\n", argv[7]);
        ok = 0;
    }
    if (!ok) {
        free(model);
        return 2;
    }
    params.sampler = params.temperature == 0.0f ? CHARLM_GREEDY : CHARLM_SAMPLE;
    params.seed = seed;
    params.max_chars = (uint32_t)max_chars;
    params.top_k = (uint16_t)top_k;
    params.top_p = top_p;

    status = charlm_self_test();
    if (status != CHARLM_OK) {
        free(model);
        return fail(status);
    }
    /* Validated once, then generated from (c/embedded.c shows the one-call
     * form, charlm_generate, which validates on every call). */
    status = charlm_load_model(model, model_len);
    if (status != CHARLM_OK) {
        free(model);
        return fail(status);
    }
    int32_t generated = charlm_generate_loaded(argv[2], strlen(argv[2]), &params, write_text, stdout);
    charlm_unload_model();
    free(model);
    if (generated < 0) {
        return fail(generated);
    }
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "charlm: cannot write standard output: %s\n", strerror(errno));
        return 2;
    }
    return 0;
}
