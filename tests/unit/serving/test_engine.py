"""Length-aware execution of the ONNX engine (shoprank.serving.engine): every row scored once, in
length-sorted chunks cut to their longest pair, with the logits of one padded call."""
import numpy as np

from shoprank.serving.engine import OrtEngine, length_chunks, row_lengths
from shoprank.serving.tokenizer import PairEncoder


def test_row_lengths_follow_the_mask_on_either_padding_side():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    assert row_lengths(mask).tolist() == [2, 4, 4, 1]


def test_length_chunks_hold_every_row_once_shortest_first_within_the_budget():
    lengths = np.array([30, 5, 12, 60, 7, 7, 64, 20, 100])
    chunks = length_chunks(lengths, 64)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(lengths)))
    longest = [int(lengths[c].max()) for c in chunks]
    assert longest == sorted(longest)
    for c in chunks:  # a row longer than the budget still gets a chunk of its own
        assert len(c) == 1 or len(c) * lengths[c].max() <= 64


def test_chunked_logits_equal_one_padded_call(tiny_model, onnx_fp32, valid_pairs):
    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=())  # every row padded to 48
    texts = valid_pairs["text"].drop_duplicates().tolist()[:60] + ["x " * 500]  # one truncated row
    batch = encoder.encode("cordless drill", texts)
    whole = OrtEngine(onnx_fp32, chunk_tokens=0).logits(batch)
    chunked = OrtEngine(onnx_fp32, chunk_tokens=64).logits(batch)
    assert chunked.shape == (len(texts),)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_int8_chunked_logits_equal_one_padded_call(tiny_model, onnx_int8, valid_pairs):
    """`make int8`'s engine quantizes each row on its own, so the grouping changes nothing."""
    encoder = PairEncoder.from_dir(tiny_model, max_length=48, buckets=())
    batch = encoder.encode("cordless drill", valid_pairs["text"].drop_duplicates().tolist()[:60])
    whole = OrtEngine(onnx_int8, chunk_tokens=0).logits(batch)
    for chunk_tokens in (64, 256):
        np.testing.assert_allclose(OrtEngine(onnx_int8, chunk_tokens=chunk_tokens).logits(batch), whole, atol=1e-5)


def test_empty_batch_gives_no_logits(onnx_fp32):
    empty = {name: np.zeros((0, 8), np.int32) for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert OrtEngine(onnx_fp32).logits(empty).shape == (0,)


def test_workers_score_a_requests_chunks_side_by_side_with_the_same_logits(tiny_model, onnx_int8, valid_pairs):
    import threading

    encoder = PairEncoder.from_dir(tiny_model, max_length=48)
    batch = encoder.encode("cordless drill", valid_pairs["text"].drop_duplicates().tolist()[:12])
    alone = OrtEngine(onnx_int8, threads=1).logits(batch)
    engine, threads = OrtEngine(onnx_int8, threads=3), set()
    run = engine._run
    engine._run = lambda feeds: threads.add(threading.current_thread().name) or run(feeds)
    np.testing.assert_allclose(engine.logits(batch), alone, atol=1e-6)
    assert len(threads) > 1     # a request this small is still cut into one chunk per worker
    assert threading.current_thread().name in threads  # the caller is one of the workers


def test_concurrent_callers_share_the_workers_and_get_their_own_logits(tiny_model, onnx_int8, valid_pairs):
    """The calling thread scores chunks beside the helpers; however many threads call at once, at
    most `workers` chunks run together, and each caller gets its own rows' logits."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    encoder = PairEncoder.from_dir(tiny_model, max_length=48)
    texts = valid_pairs["text"].drop_duplicates().tolist()[:40]
    batches = [encoder.encode(query, texts[i::4]) for i, query in enumerate(["drill", "paint", "hose", "lamp"])]
    alone = [OrtEngine(onnx_int8, threads=1).logits(b) for b in batches]
    engine, lock, running, most = OrtEngine(onnx_int8, threads=2), threading.Lock(), [0], [0]
    run = engine._run

    def counted(feeds):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)  # long enough for the callers to overlap
        try:
            return run(feeds)
        finally:
            with lock:
                running[0] -= 1

    engine._run = counted
    with ThreadPoolExecutor(4) as callers:
        results = list(callers.map(engine.logits, batches * 3))
    for got, want in zip(results, alone * 3):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert most[0] == 2
