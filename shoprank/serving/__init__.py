"""The request path: request checks -> tokenizer -> engine -> sorter, the Triton glue that runs
them as the `rank` ensemble (triton/), server control and the client."""
