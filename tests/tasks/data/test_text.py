"""Behaviour tests for tasks.data.text: the documented tokenisation rules, vocabulary, encoding."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tasks.data import text


def _tokens(*texts: str) -> list[list[str]]:
    return text.tokenize(list(texts)).to_pylist()


def _vocabulary(tokens: pa.ListArray, vocab_size: int) -> list[str]:
    """The vocabulary of `tokens`, counted as the tokenizer counts its chunks."""
    counts = pc.value_counts(tokens.flatten())
    return text.vocabulary_from_counts(counts.field("values"), counts.field("counts"), vocab_size)


def _lists(*lists: list[str]) -> pa.ListArray:
    return pa.array(list(lists), pa.list_(pa.string()))


# --- tokenisation rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # lower-cased, Unicode-aware
        ("GREAT Movie", ["great", "movie"]),
        ("ÉCOLE Straße", ["école", "straße"]),
        # HTML line breaks and other tags separate words and vanish
        ("one<br />two", ["one", "two"]),
        ("The end.<br /><br />Next part", ["the", "end", "next", "part"]),
        ("<i>italic</i> word", ["italic", "word"]),
        # ! and ? are tokens of their own, one per character
        ("great!!!", ["great", "!", "!", "!"]),
        ("really?!", ["really", "?", "!"]),
        ("why?why", ["why", "?", "why"]),
        # apostrophes inside words are kept
        ("don't", ["don't"]),
        ("the 90's", ["the", "90's"]),
        ("o'neill's film", ["o'neill's", "film"]),
        # quotes around words are stripped
        ("'plot'", ["plot"]),
        ("''double''", ["double"]),
        ("rock 'n' roll", ["rock", "n", "roll"]),
        ("the students' choice", ["the", "students", "choice"]),
        ("' lonely '", ["lonely"]),
        ('"quoted"', ["quoted"]),
        # other punctuation and whitespace separate tokens; digits are kept
        ("well-made, fun.", ["well", "made", "fun"]),
        ("10/10", ["10", "10"]),
        ("tab\tnew\nline\u00a0nbsp", ["tab", "new", "line", "nbsp"]),
        # letters of any script are kept
        ("naïve café", ["naïve", "café"]),
        ("日本語 テスト", ["日本語", "テスト"]),
        ("кино хорошее", ["кино", "хорошее"]),
        # nothing to tokenise
        ("", []),
        ("   ", []),
        ("... --- ,,,", []),
        ("<br /><br />", []),
    ],
)
def test_tokenisation_rules(raw: str, expected: list[str]) -> None:
    # Given a text / When it is tokenised / Then the documented rules apply
    assert _tokens(raw) == [expected]


def test_replacement_characters_separate_tokens() -> None:
    # Given text where undecodable bytes were replaced by U+FFFD
    # When tokenised
    # Then the replacement characters are not part of any token
    assert _tokens("good\ufffd\ufffdfilm") == [["good", "film"]]


def test_one_token_list_per_text_in_order() -> None:
    # Given several texts, some empty, as a list and as an Arrow array
    texts = ["A b", "", "c!", "<br />"]

    # When tokenised either way
    from_list = text.tokenize(texts)
    from_arrow = text.tokenize(pa.array(texts))

    # Then there is one list<string> per text, in order
    expected = [["a", "b"], [], ["c", "!"], []]
    assert from_list.to_pylist() == expected
    assert from_arrow.to_pylist() == expected
    assert from_list.type == pa.list_(pa.string())


def test_result_does_not_depend_on_thread_count() -> None:
    # Given enough texts for the parallel path, some empty, some with edge punctuation
    rng = random.Random(3)
    words = ["Great!", "'quoted'", "don't", "<br />", "", "  ", "naïve?", "x"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(2500)]

    # When tokenised on one thread and on several
    single = text.tokenize(texts, threads=1)
    multi = text.tokenize(texts, threads=4)

    # Then the results are identical
    assert multi.to_pylist() == single.to_pylist()
    assert len(multi) == len(texts)


# --- vocabulary ----------------------------------------------------------------------------------


def test_vocabulary_is_frequency_ordered_with_token_tie_break() -> None:
    # Given tokens where a and c appear twice, b and d once
    tokens = _lists(["d", "c", "a"], ["b", "a", "c"])

    # When a vocabulary is built
    vocabulary = _vocabulary(tokens, vocab_size=100)

    # Then reserved ids come first, then decreasing frequency, ties by token
    assert vocabulary == ["<pad>", "<oov>", "a", "c", "b", "d"]
    assert vocabulary[text.PAD_ID] == "<pad>"
    assert vocabulary[text.OOV_ID] == "<oov>"


def test_vocabulary_is_cut_at_vocab_size_including_reserved() -> None:
    # Given tokens with clear frequencies
    tokens = _lists(["x"] * 5 + ["y"] * 4 + ["z"] * 3 + ["w"] * 2)

    # When the vocabulary is limited to 4 ids
    # Then it holds the two reserved ids and the two most frequent tokens
    assert _vocabulary(tokens, vocab_size=4) == ["<pad>", "<oov>", "x", "y"]


def test_vocabulary_does_not_depend_on_input_order() -> None:
    # Given the same tokens in different orders, with many ties (w* x3, v* x1)
    words = [f"w{i}" for i in range(30)] * 3 + [f"v{i}" for i in range(30)]
    rng = random.Random(5)
    orders = []
    for _ in range(3):
        shuffled = words[:]
        rng.shuffle(shuffled)
        orders.append(_lists(shuffled[:50], shuffled[50:]))

    # When vocabularies are built
    built = [_vocabulary(t, vocab_size=40) for t in orders]

    # Then they are identical and follow (count desc, token asc)
    assert built[0] == built[1] == built[2]
    frequent = sorted(f"w{i}" for i in range(30))  # "w0", "w1", "w10", ...: code-point order
    rare = sorted(f"v{i}" for i in range(30))
    assert built[0] == ["<pad>", "<oov>", *frequent, *rare[:8]]


def test_vocabulary_smaller_than_requested_when_few_tokens() -> None:
    # Given only two distinct tokens, or none at all
    # When a large vocabulary is requested
    # Then it holds what there is
    assert _vocabulary(_lists(["a", "b", "a"]), 1000) == ["<pad>", "<oov>", "a", "b"]
    assert _vocabulary(_lists([], []), 1000) == ["<pad>", "<oov>"]


# --- encoding ------------------------------------------------------------------------------------


def test_encode_maps_tokens_to_ids_and_unknown_to_oov() -> None:
    # Given a vocabulary and token lists containing unknown tokens and an empty list
    vocabulary = ["<pad>", "<oov>", "good", "film"]
    tokens = _lists(["good", "film", "!"], [], ["unknown", "good"])

    # When encoded
    ids = text.encode(tokens, vocabulary)

    # Then each token maps to its index, unknown ones to 1, list shapes are kept
    assert ids.to_pylist() == [[2, 3, 1], [], [1, 2]]
    assert ids.type == pa.list_(pa.int32())


def test_encode_never_produces_pad_for_tokens() -> None:
    # Given tokens that look like the reserved names
    vocabulary = ["<pad>", "<oov>", "a"]

    # When encoded
    # Then they are ordinary unknown tokens, never the padding id
    assert text.encode(_lists(["<pad>", "<oov>", "a"]), vocabulary).to_pylist() == [[1, 1, 2]]


def test_encode_a_slice() -> None:
    # Given a slice of a larger token array
    vocabulary = ["<pad>", "<oov>", "a", "b", "c"]
    tokens = _lists(["a"], ["b", "c"], ["c"], ["a", "a"])

    # When only part of it is encoded
    ids = text.encode(tokens.slice(1, 2), vocabulary)

    # Then the ids line up with the sliced lists
    assert ids.to_pylist() == [[3, 4], [4]]


def test_tokenize_then_encode_round_trip() -> None:
    # Given a vocabulary built from some texts
    train = ["Great film!", "Dull film."]
    vocabulary = _vocabulary(text.tokenize(train), 10)

    # When another text is encoded
    ids = text.encode(text.tokenize(["GREAT, great plot!"]), vocabulary).to_pylist()[0]

    # Then known words map back to themselves and the unknown one to <oov>
    assert [vocabulary[i] for i in ids] == ["great", "great", "<oov>", "!"]


# --- decoding ------------------------------------------------------------------------------------


def test_decode_valid_utf8() -> None:
    # Given valid UTF-8 bytes, including multi-byte characters and an empty review
    raw = [b"plain", "café 日本".encode(), b""]

    # When decoded
    texts, bad = text.decode_utf8(raw)

    # Then the strings come back unchanged and nothing is counted
    assert texts.to_pylist() == ["plain", "café 日本", ""]
    assert bad == 0


@pytest.mark.parametrize(
    ("raw", "decoded", "bad"),
    [
        (b"ok\xff", "ok\ufffd", 1),
        (b"\xff\xfe", "\ufffd\ufffd", 2),
        (b"caf\xc3", "caf\ufffd", 1),  # truncated 2-byte sequence
        (b"a\xe2\x82b", "a\ufffdb", 2),  # truncated 3-byte sequence: 2 bytes lost
        ("é".encode() + b"\x80x", "é\ufffdx", 1),
    ],
)
def test_decode_replaces_and_counts_undecodable_bytes(raw: bytes, decoded: str, bad: int) -> None:
    # Given a review with undecodable bytes among valid ones
    # When decoded
    texts, count = text.decode_utf8([b"fine", raw])

    # Then bad bytes become U+FFFD, valid reviews are untouched, the bytes are counted
    assert texts.to_pylist() == ["fine", decoded]
    assert count == bad


def test_decode_never_raises_on_random_bytes() -> None:
    # Given arbitrary binary junk
    rng = random.Random(11)
    raw = [rng.randbytes(rng.randint(0, 300)) for _ in range(200)]

    # When decoded
    texts, count = text.decode_utf8(raw)

    # Then there is one string per input, the count is plausible, and tokenising works
    assert len(texts) == len(raw)
    assert 0 < count <= sum(map(len, raw))
    assert len(text.tokenize(texts)) == len(raw)


def test_decode_nothing() -> None:
    # Given no reviews / When decoded / Then the result is empty
    texts, count = text.decode_utf8([])
    assert texts.to_pylist() == []
    assert count == 0


def test_fast_tokenizer_agrees_with_the_regex_rules() -> None:
    # Given many random texts built from the characters the rules care about, Unicode included
    from tasks.data.fast_tokens import tokenize_fast

    rng = random.Random(7)
    # (with the bytes next to the special ones: the fast path's first scan over-selects those)
    alphabet = "abZ9 '<>!?.,-/\n\t\"xy''éÉñ’…—ΣЖ٣😀\u0301İß\u00a0=#%&`@[{"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    texts += ["", "<br />", "don't", "let''s go", "'quoted'", "a<b>c", "x < y", "<a>'b", "9's!!"]
    texts += ["café’s naïve", "ÉCOLE", "x😀y", "Straße İstanbul"]
    arr = pa.array(texts, pa.string())

    # When both tokenisers run, on all texts and on ASCII-only ones
    fast = tokenize_fast(arr)
    ascii_texts = pa.array([t for t in texts if t.isascii()], pa.string())
    assert tokenize_fast(ascii_texts).to_pylist() == text._tokenize_regex(ascii_texts).to_pylist()
    slow = text._tokenize_regex(arr)

    # Then every text gets the same tokens
    assert fast.to_pylist() == slow.to_pylist()


def test_mixed_ascii_and_unicode_texts_keep_their_order() -> None:
    # Given ASCII and non-ASCII texts interleaved
    texts = ["Great film!", "Café naïve", "bad", "Ünïcode <br /> ok?", ""] * 300

    # When tokenised together (enough texts for the threaded path)
    tokens = text.tokenize(texts).to_pylist()

    # Then each text's tokens are those it gets on its own
    assert tokens[:5] == [
        ["great", "film", "!"],
        ["café", "naïve"],
        ["bad"],
        ["ünïcode", "ok", "?"],
        [],
    ]
    assert tokens == tokens[:5] * 300
