/* Inference on one image with a trainer's model, in its scratch row 0: multi-pass goodness per label,
 * the "hard" negative label, and the one-pass head (mirror of IntFFModel.label_scores, multi_pass_scores,
 * head_logits in edgeff/runtime/int_model.py and hardest_wrong_labels in edgeff/data/labels.py). */
#include "edgeff_kernels.h"

/* scores[c] = the goodness of the layers in layer_mask summed, with label c */
static void label_scores(ef_ff_trainer *t, const uint8_t *image, uint32_t layer_mask, int64_t *scores)
{
    int64_t g[EF_MAX_LAYERS];
    for (int32_t c = 0; c < t->n_classes; ++c) {
        ef_ff_input(t, image, c, 0);
        ef_ff_forward(t, 0, g);
        scores[c] = 0;
        for (int32_t l = 0; l < t->n_layers; ++l)
            if (layer_mask >> l & 1u)
                scores[c] += g[l];
    }
}

int32_t ef_ff_multi_pass(ef_ff_trainer *t, const uint8_t *image, uint32_t layer_mask, int64_t *scores)
{
    label_scores(t, image, layer_mask, scores);
    int32_t best = 0;
    for (int32_t c = 1; c < t->n_classes; ++c)
        if (scores[c] > scores[best])
            best = c;
    return best;
}

int32_t ef_ff_hardest_negative_label(ef_ff_trainer *t, const uint8_t *image, int32_t label, int64_t *scores)
{
    label_scores(t, image, (1u << t->n_layers) - 1u, scores);
    int32_t best = label == 0 ? 1 : 0;
    for (int32_t c = best + 1; c < t->n_classes; ++c)
        if (c != label && scores[c] > scores[best])
            best = c;
    return best;
}

int32_t ef_ff_one_pass(ef_ff_trainer *t, const ef_ff_head *head, const uint8_t *image, int8_t *logits)
{
    int64_t g[EF_MAX_LAYERS];
    ef_ff_input(t, image, EF_NEUTRAL_LABEL, 0);
    ef_ff_forward(t, 0, g);
    int8_t *n = head->input;
    for (int32_t l = 0; l < t->n_layers; ++l) {
        const ef_ff_layer *L = &t->layers[l];
        if (head->layer_mask >> l & 1u) {
            ef_l2_normalize_s8(L->output, 1, L->d_out, L->out_zero_point, t->rounding, n);
            n += L->d_out;
        }
    }
    int32_t n_classes = t->n_classes;
    ef_fully_connected_s8(head->input, 1, head->d_in, head->weight, n_classes, head->bias, head->multiplier,
                          head->shift, 0, -128, 127, t->rounding, logits);
    int32_t best = 0;
    for (int32_t c = 1; c < n_classes; ++c)
        if (logits[c] > logits[best])
            best = c;
    return best;
}
