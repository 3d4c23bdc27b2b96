/*
 * charlm from C: the host version of what a firmware does with the library.
 *
 *   generate MODEL.clm PROMPT TEMPERATURE SEED MAX_CHARS [TOP_K TOP_P]
 *   generate --info MODEL.clm
 *
 * prints exactly what
 *   charlm generate --model MODEL.clm --prompt PROMPT --temperature T
 *                   --seed S --max-chars N [--top-k K --top-p P]
 * prints (temperature 0 is greedy, as on that command line). On an error it
 * prints charlm's description of it on stderr and exits with status 2.
 *
 * Build (capi/tests/c_program.rs does this):
 *   cargo build -p charlm-c --release
 *   cc -std=c99 -I capi/include capi/c/generate.c target/release/libcharlm.a \
 *      -lpthread -ldl -lm -o generate
 */
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
    double temperature = strtod(argv[3], NULL);
    params.sampler = temperature == 0.0 ? CHARLM_GREEDY : CHARLM_SAMPLE;
    params.temperature = (float)temperature;
    params.seed = strtoull(argv[4], NULL, 10);
    params.max_chars = (uint32_t)strtoul(argv[5], NULL, 10);
    params.top_k = argc == 8 ? (uint16_t)strtoul(argv[6], NULL, 10) : 0;
    params.top_p = argc == 8 ? strtof(argv[7], NULL) : 1.0f;

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
    return 0;
}
