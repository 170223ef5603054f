"""The text suites' runtime on a tiny Llama classifier: the token split format, last-token pooling with right padding,
length-sorted batching, masked classes, and a merged update applied in place to the backbone."""

from __future__ import annotations

import pytest
import torch

from loramerge.repro.splits import PAD_ID, DataError, load_token_split, pad_sequences, save_token_split
from loramerge.repro.suites.evaluation import EvalTask, count_correct, evaluate
from loramerge.repro.suites.text.model import encode, load_backbone
from loramerge.repro.suites.text.runtime import LlamaClassifierModel

VOCAB, HIDDEN, PAD_TOKEN = 50, 32, 1


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        num_labels=3,
        pad_token_id=PAD_TOKEN,
    )
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config).eval()


def sequences(count: int, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (count,), generator=generator).tolist()
    # ids ≥ 2: no real token equals the pad token, as in the NLI data (Llama-3 pads with <|end_of_text|>)
    return [torch.randint(2, VOCAB, (length,), generator=generator).tolist() for length in lengths]


def test_token_splits_round_trip_and_reject_holes(tmp_path):
    tokens = pad_sequences([[5, 6, 7], [8], [9, 10]])
    assert tokens.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [9, 10, PAD_ID]]
    labels = torch.tensor([0, 2, 1])
    save_token_split(tmp_path / "val.safetensors", tokens, labels, ["ent", "neu", "con"], {"task": "snli"})
    loaded, loaded_labels, names = load_token_split(tmp_path / "val.safetensors")
    assert torch.equal(loaded, tokens) and torch.equal(loaded_labels, labels) and names == ["ent", "neu", "con"]
    holed = tokens.clone()
    holed[0, 1] = PAD_ID
    with pytest.raises(DataError, match="followed only by padding"):
        save_token_split(tmp_path / "bad.safetensors", holed, labels, ["ent", "neu", "con"])
    assert not (tmp_path / "bad.safetensors").exists()


def test_last_token_features_score_as_the_hub_classifier_does():
    """features @ score.T equals LlamaForSequenceClassification's own logits (pooled at the last non-pad token) for
    each example run alone, in float32."""
    model = tiny_llama()
    examples = sequences(7)
    features = encode(model, pad_sequences(examples), batch_size=3)
    for row, example in enumerate(examples):
        logits = model(input_ids=torch.tensor([example])).logits[0]
        torch.testing.assert_close(features[row] @ model.score.weight.T, logits, rtol=1e-4, atol=1e-5)


def test_batching_and_length_sorting_change_no_prediction():
    model = tiny_llama()
    tokens = pad_sequences(sequences(23))
    head = torch.randn(3, HIDDEN, generator=torch.Generator().manual_seed(3))
    alone = encode(model, tokens, batch_size=1)
    for batch_size in (2, 5, 23):
        batched = encode(model, tokens, batch_size=batch_size)
        torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
        assert torch.equal((batched @ head.T).argmax(1), (alone @ head.T).argmax(1))


def test_masked_classes_are_never_predicted():
    features = torch.eye(3)
    head = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    assert count_correct(features, head, labels) == 3
    # class 1 masked (QNLI and RTE have no 'neutral'): the example of class 1 falls to another class
    assert count_correct(features, head, labels, masked=(1,)) == 2
    with pytest.raises(DataError, match="masked classes"):
        count_correct(features, head, labels, masked=(3,))


def test_evaluation_applies_an_update_in_place_and_restores_the_backbone(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path / "backbone", safe_serialization=True)
    backbone = load_backbone(tmp_path / "backbone", "cpu", "float32")
    before = {name: tensor.clone() for name, tensor in backbone.state_dict().items()}
    tokens = pad_sequences(sequences(9))
    labels = torch.randint(0, 3, (9,), generator=torch.Generator().manual_seed(4))
    task = EvalTask("rte", "test", tokens, labels, model.score.weight.detach(), masked=(1,))
    module = "model.layers.0.self_attn.q_proj"
    update = {module: torch.randn(HIDDEN, HIDDEN, generator=torch.Generator().manual_seed(5))}
    records = evaluate(LlamaClassifierModel, backbone, [task], [0.0, 1.0], update, batch_size=4)
    assert [record["lam"] for record in records] == [0.0, 1.0]
    # λ = 0 is the backbone itself; the masked class is never predicted
    features = encode(model, tokens, batch_size=4)
    assert records[0]["correct"] == count_correct(features, task.head, labels, masked=(1,))
    assert all(torch.equal(tensor, before[name]) for name, tensor in backbone.state_dict().items())


def test_a_bfloat16_backbone_loads_in_bfloat16(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "backbone", safe_serialization=True)
    model = load_backbone(tmp_path / "backbone", "cpu", "bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    features = encode(model, pad_sequences(sequences(4)), batch_size=2)
    assert features.dtype == torch.float32 and features.shape == (4, HIDDEN)
