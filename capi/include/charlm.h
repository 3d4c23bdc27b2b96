/*
 * charlm: character-level LSTM/GRU models on microcontrollers, from C.
 *
 * Link libcharlm.a (cargo build -p charlm-c --release [--target ...]);
 * the model is a .clm file's bytes, read in place. See capi/README.md.
 */

#ifndef CHARLM_H
#define CHARLM_H

/* Generated from capi/src/lib.rs by cbindgen (capi/tests/c_program.rs checks it); do not edit. */

#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/**
 * Success.
 */
#define CHARLM_OK 0

/**
 * A pointer the call needs is NULL.
 */
#define CHARLM_ERR_NULL -1

/**
 * The model's bytes are not a usable model (truncated, damaged, another
 * format version, or inconsistent; `charlm info FILE` on a host says
 * which). The length given must be the file's exact size: bytes after it
 * (a flash sector's padding) make it unusable too.
 */
#define CHARLM_ERR_MODEL -2

/**
 * The model is larger than this build's workspace (`CHARLM_MAX_*`).
 */
#define CHARLM_ERR_TOO_LARGE -3

/**
 * The model's weight type is left out of this build (feature `f16` or
 * `int8`).
 */
#define CHARLM_ERR_WEIGHT_TYPE -4

/**
 * A parameter is out of range: an unknown sampler, a `max_chars` above
 * `INT32_MAX`; with `CHARLM_SAMPLE`, a temperature that is not finite and
 * above 0, a `top_p` outside (0, 1], or top-k / top-p in a build without
 * them (feature `truncation`). `CHARLM_GREEDY` reads none of temperature,
 * `top_k` and `top_p`. (`top_k` itself has no upper limit: one above the
 * vocabulary keeps every character.)
 */
#define CHARLM_ERR_PARAMS -5

/**
 * The prompt is not UTF-8, or has no character the model knows.
 */
#define CHARLM_ERR_PROMPT -6

/**
 * Another call is using the workspace.
 */
#define CHARLM_ERR_BUSY -7

/**
 * `charlm_self_test` failed: the Cortex-M4F kernel disagrees with the
 * portable one.
 */
#define CHARLM_ERR_SELF_TEST -8

/**
 * `charlm_generate_loaded` without a model loaded by `charlm_load_model`.
 */
#define CHARLM_ERR_NO_MODEL -9

/**
 * Pick the most likely character (no randomness).
 */
#define CHARLM_GREEDY 0

/**
 * Draw from `softmax(logits / temperature)`, over the `top_k` most likely
 * characters and then the nucleus of mass `top_p` among them.
 */
#define CHARLM_SAMPLE 1

/**
 * An LSTM (PyTorch's gate order i, f, g, o).
 */
#define CHARLM_LSTM 0

/**
 * A GRU (r, z, n).
 */
#define CHARLM_GRU 1

/**
 * IEEE half-precision weight matrices.
 */
#define CHARLM_F16 0

/**
 * Signed 8-bit weight matrices with an f16 scale per row.
 */
#define CHARLM_I8 1

/**
 * What a model is (see `charlm_model_info`).
 */
typedef struct charlm_info {
  /**
   * `CHARLM_LSTM` or `CHARLM_GRU`.
   */
  uint32_t cell;
  /**
   * Recurrent layers, 1 to 4.
   */
  uint32_t layers;
  /**
   * Hidden units per layer.
   */
  uint32_t hidden;
  /**
   * Ids: padding, the symbols, `<eos>`.
   */
  uint32_t vocab;
  /**
   * `CHARLM_F16` or `CHARLM_I8`.
   */
  uint32_t weights;
  /**
   * Weight multiply-accumulates per generated character.
   */
  uint32_t macs_per_char;
  /**
   * Bytes of RAM a workspace sized exactly to this model needs, in a
   * build with this model's weight type alone (a build with both types,
   * as hosted builds always are, adds `2 * layers * hidden` for an f16
   * model). This library's workspace is sized to its `CHARLM_MAX_*`
   * capacities instead.
   */
  uint32_t workspace_bytes;
} charlm_info;

/**
 * How to generate one text.
 */
typedef struct charlm_params {
  /**
   * `CHARLM_GREEDY` or `CHARLM_SAMPLE`.
   */
  uint32_t sampler;
  /**
   * With `CHARLM_SAMPLE`: above 0 (1 leaves the model's probabilities
   * as they are; lower is more conservative).
   */
  float temperature;
  /**
   * With `CHARLM_SAMPLE`: only the `top_k` most likely characters (0:
   * all).
   */
  uint16_t top_k;
  /**
   * With `CHARLM_SAMPLE`: then only the fewest most likely whose
   * probabilities reach `top_p` (1: all).
   */
  float top_p;
  /**
   * Seed of the random number generator (PCG32): the same seed gives the
   * same text.
   */
  uint64_t seed;
  /**
   * Characters to generate at most, 0 to `INT32_MAX` (the text also
   * ends at `<eos>`; 0 runs and writes the prompt only).
   */
  uint32_t max_chars;
} charlm_params;

/**
 * Receives generated text: `len` bytes of UTF-8 at `text` (one whole
 * character per call; not NUL-terminated, so not a C string), and the
 * `ctx` given to `charlm_generate`. Returns 0 to go on, or any other value
 * to end the text there (an output buffer that is full, a button
 * pressed): the call then returns the characters generated so far. It
 * must return: leaving it by `longjmp` (or a C++ exception) skips the
 * library's own return and leaves it busy for good.
 */
typedef int (*charlm_write_fn)(void *ctx,
                               const char *text,
                               size_t len);

/**
 * Checks that `model_len` bytes at `model` are a model this build can run
 * and, when `info` is not NULL, describes it there.
 *
 * Returns `CHARLM_OK`, or `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`,
 * `CHARLM_ERR_TOO_LARGE` or `CHARLM_ERR_WEIGHT_TYPE`; `info` is filled
 * in for a model that is only too large for this build.
 *
 * # Safety
 * `model` points to `model_len` readable bytes; `info` is NULL or points to
 * a writable `charlm_info`.
 */
int32_t charlm_model_info(const uint8_t *model,
                          size_t model_len,
                          struct charlm_info *info);

/**
 * Generates one text: runs the `prompt_len` bytes of UTF-8 at `prompt`
 * through the model (characters it does not know are skipped), then
 * generates up to `params->max_chars` characters, ending early at
 * `<eos>`. `write` receives the prompt's known characters, then each
 * generated one as it is produced (with `ctx`), and may end the text by
 * returning nonzero. A character is 1 to 4
 * bytes: a buffer that collects the whole text needs up to 4 bytes per
 * prompt character and per `max_chars`. The calls to `write` less the
 * value returned are the prompt characters the model ran; the prompt's
 * characters less those are the ones it skipped. An empty prompt, or one
 * with no character the model knows, is `CHARLM_ERR_PROMPT`: a text
 * starts from at least one.
 *
 * The call computes, and checks its parameters, in round-to-nearest
 * without flush-to-zero and with floating-point exceptions masked,
 * whatever the caller's floating-point mode (`-ffast-math` sets
 * flush-to-zero), and gives the caller's mode back when it returns;
 * `write` runs in the call's mode.
 *
 * Each call validates the model first, checksum and every weight
 * included. To validate once and generate many texts, use
 * `charlm_load_model` and `charlm_generate_loaded`.
 *
 * Returns the number of characters generated (0 or more), or
 * `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`, `CHARLM_ERR_TOO_LARGE`,
 * `CHARLM_ERR_WEIGHT_TYPE`, `CHARLM_ERR_PARAMS`, `CHARLM_ERR_PROMPT`
 * or `CHARLM_ERR_BUSY`; on an error `write` is not called.
 *
 * # Safety
 * `model` points to `model_len` readable bytes, `prompt` to `prompt_len`,
 * `params` to a `charlm_params`; `write` is safe to call with `ctx` and a
 * pointer to that many bytes.
 */
int32_t charlm_generate(const uint8_t *model,
                        size_t model_len,
                        const char *prompt,
                        size_t prompt_len,
                        const struct charlm_params *params,
                        charlm_write_fn write,
                        void *ctx);

/**
 * Validates the `model_len` bytes at `model` once and keeps the model for
 * `charlm_generate_loaded`, replacing any model loaded before. A model
 * that fails validation leaves none loaded; a NULL `model`
 * (`CHARLM_ERR_NULL`) or a call while another is generating
 * (`CHARLM_ERR_BUSY`) leaves the loaded model as it was.
 *
 * Returns `CHARLM_OK`, or `CHARLM_ERR_NULL`, `CHARLM_ERR_MODEL`,
 * `CHARLM_ERR_TOO_LARGE`, `CHARLM_ERR_WEIGHT_TYPE` or `CHARLM_ERR_BUSY`.
 *
 * # Safety
 * `model` points to `model_len` readable bytes that stay readable and
 * unchanged until the next `charlm_load_model` or `charlm_unload_model`
 * (a model in flash, or a buffer the program keeps).
 */
int32_t charlm_load_model(const uint8_t *model,
                          size_t model_len);

/**
 * Forgets the loaded model (its bytes may then change or go). Returns
 * `CHARLM_OK`, or `CHARLM_ERR_BUSY` while a text is being generated.
 */
int32_t charlm_unload_model(void);

/**
 * `charlm_generate` on the model of `charlm_load_model`, without
 * validating it again.
 *
 * Returns what `charlm_generate` returns, or `CHARLM_ERR_NO_MODEL` when
 * none is loaded.
 *
 * # Safety
 * As for `charlm_generate`'s `prompt`, `params`, `write` and `ctx`.
 */
int32_t charlm_generate_loaded(const char *prompt,
                               size_t prompt_len,
                               const struct charlm_params *params,
                               charlm_write_fn write,
                               void *ctx);

/**
 * A short English description of a status (a static, NUL-terminated
 * string): "ok (characters generated)" for a count above 0, as
 * `charlm_generate` returns, and "unknown status" for a negative value
 * that is none of them.
 */
const char *charlm_status_text(int32_t status);

/**
 * Checks, on the device, what the text being the same bits as on the
 * host rests on: on a Cortex-M4F, that the `VCVTB`/`VMLA` kernel gives the
 * portable kernel's bits on random rows and on every finite half, in the
 * floating-point mode every call sets (see `charlm_generate`). Elsewhere
 * there is nothing to check. Returns `CHARLM_OK` or
 * `CHARLM_ERR_SELF_TEST`. Call it once at start-up: it converts every
 * finite half, so it is not instant.
 */
int32_t charlm_self_test(void);

/**
 * The workspace's capacities in this build: hidden units, layers and
 * vocabulary (ids); each pointer may be NULL.
 *
 * # Safety
 * Each pointer is NULL or points to a writable `uint32_t`.
 */
void charlm_capacity(uint32_t *hidden,
                     uint32_t *layers,
                     uint32_t *vocab);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* CHARLM_H */
