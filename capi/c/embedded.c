/*
 * A model compiled into the program, as on a device: the C source that
 * `charlm export MODEL.clm --c-source model.c` writes, linked beside this.
 *
 *   embedded PROMPT TEMPERATURE SEED MAX_CHARS   the text, as charlm generate prints it
 *   embedded --offset                            the model's address modulo 4
 *
 * Build (capi/tests/c_program.rs does this):
 *   cc -std=c99 -I capi/include capi/c/embedded.c model.c libcharlm.a -lpthread -ldl -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charlm.h"

extern const uint8_t *const charlm_model;
extern const size_t charlm_model_len;

static int write_text(void *ctx, const char *text, size_t len) {
    /* A stream that fails ends the text (nonzero): nothing more would show. */
    return fwrite(text, 1, len, (FILE *)ctx) != len;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--offset") == 0) {
        printf("%u\n", (unsigned)((uintptr_t)charlm_model % 4));
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: %s PROMPT TEMPERATURE SEED MAX_CHARS | --offset\n", argv[0]);
        return 2;
    }
    double temperature = strtod(argv[2], NULL);
    charlm_params params;
    memset(&params, 0, sizeof params);
    params.sampler = temperature == 0.0 ? CHARLM_GREEDY : CHARLM_SAMPLE;
    params.temperature = (float)temperature;
    params.top_p = 1.0f;
    params.seed = strtoull(argv[3], NULL, 10);
    params.max_chars = (uint32_t)strtoul(argv[4], NULL, 10);
    int32_t n = charlm_generate(charlm_model, charlm_model_len, argv[1], strlen(argv[1]), &params,
                                write_text, stdout);
    if (n < 0) {
        fprintf(stderr, "charlm: %s\n", charlm_status_text(n));
        return 2;
    }
    putchar('\n');
    return 0;
}
