""""Why this order?": which words of the query and of a product moved its score.

occlusion             word-level leave-one-out over any scoring callable (the served path: the
                      `explain` Triton model calls tokenizer -> ranker -> sorter for the variants)
integrated_gradients  captum's Integrated Gradients on the PyTorch cross-encoder, at the embeddings
agreement             rank correlation of two methods' word attributions
faithfulness          deletion curves: remove the top words first vs random vs least first, AUC
html, terminal        the page people look at; words shaded in a terminal
served                the `explain` model's logic (Triton Python backend) and its client
report                `make explain-report`: both methods on real pairs, faithfulness, cost
"""
