import pytest

from model.tokenizer import CAPTION_INSTRUCTION, PROMPT_NO_INPUT, Tokenizer, format_prompt


def test_format_prompt_without_input_uses_the_short_template():
    prompt = format_prompt("Say hi")
    assert prompt == PROMPT_NO_INPUT.replace("{instruction}", "Say hi")
    assert "### Input:" not in prompt
    assert prompt.endswith("### Instruction:\nSay hi\n\n### Response:")
    assert format_prompt("Say hi", "") == prompt


def test_format_prompt_with_input_has_the_input_section():
    prompt = format_prompt("Translate", "bonjour")
    assert prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert prompt.endswith("### Instruction:\nTranslate\n\n### Input:\nbonjour\n\n### Response:")


def test_format_prompt_rejects_a_tuple_instruction():
    # The published code passed ("text",) here by mistake; we refuse it instead of printing the tuple.
    with pytest.raises(TypeError):
        format_prompt(("Say hi",))


def test_caption_instruction_is_the_published_one():
    assert CAPTION_INSTRUCTION == "Generate caption of this image"


def test_tokenizer_round_trip_and_special_ids(tokenizer: Tokenizer):
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, -1)
    text = "a red circle, 你好"
    ids = tokenizer.encode(text, bos=True, eos=True)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids[1:-1]) == text
    assert tokenizer.encode(text, bos=False, eos=False) == ids[1:-1]


def test_missing_tokenizer_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        Tokenizer(tmp_path / "nope.model")
