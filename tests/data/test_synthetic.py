"""Synthetic grounding data: deterministic, boxes on the drawn shapes, phrases that need every word."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from vlm_train.data import coords
from vlm_train.data.sample import Sample
from vlm_train.data.synthetic import COLOURS, KINDS, _holds, generate


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_data_and_prefix_stable(tmp_path):
    a = generate(tmp_path / "a", 12, seed=3, kind="mixed")
    b = generate(tmp_path / "b", 12, seed=3, kind="mixed")
    c = generate(tmp_path / "c", 5, seed=3, kind="mixed")
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    assert [s.to_dict() for s in a[:5]] == [s.to_dict() for s in c]
    for s in a:
        rel = s.messages[0].content[0].media
        assert _digest(tmp_path / "a" / rel) == _digest(tmp_path / "b" / rel)


def test_other_seed_other_images(tmp_path):
    a = generate(tmp_path / "a", 8, seed=0)
    b = generate(tmp_path / "b", 8, seed=1)
    da = {_digest(tmp_path / "a" / s.messages[0].content[0].media) for s in a}
    db = {_digest(tmp_path / "b" / s.messages[0].content[0].media) for s in b}
    assert not da & db


def test_boxes_cover_the_named_colour(tmp_path):
    samples = generate(tmp_path, 40, seed=7, image_size=64, max_shapes=3)
    for s in samples:
        im = np.asarray(Image.open(tmp_path / s.messages[0].content[0].media).convert("RGB")).astype(int)
        t = s.targets[0]
        colour = s.regions[s.meta["target_index"]].phrase.split()[1]
        assert colour in t.phrase
        x1, y1, x2, y2 = (int(v) for v in t.box.as_list())
        inside = im[y1:y2, x1:x2]
        match = (np.abs(inside - np.array(COLOURS[colour])).sum(-1) < 10).mean()
        # circles/triangles/diamonds fill ~50-80% of their box; none of it is another shape's colour
        assert match > 0.35, (s.id, t.phrase, match)
        outside = np.ones(im.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        other_regions = [r.box for r in s.regions if r.box != t.box]
        for b in other_regions:
            outside[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)] = False
        # no coloured pixels outside the annotated boxes: boxes are complete
        assert (np.abs(im[outside] - im[0, 0]).sum(-1) < 10).all()


def test_phrase_needs_its_words(tmp_path):
    samples = generate(tmp_path, 300, seed=11, max_shapes=3)
    modes = Counter(s.meta["mode"] for s in samples)
    assert {"single", "colour", "size", "relation"} <= set(modes)
    for s in samples:
        n = s.meta["n_shapes"]
        assert len(s.regions) == n
        names = [r.phrase.split() for r in s.regions]  # [size, colour, kind]
        target = s.regions[s.meta["target_index"]]
        assert target.box == s.targets[0].box
        size, colour, kind = target.phrase.split()
        if n == 1:
            continue
        # Without attribute words, "the <kind>" is ambiguous: another shape of the same kind exists.
        assert sum(1 for w in names if w[2] == kind) >= 2, s.targets[0].phrase
        mode = s.meta["mode"]
        if mode == "colour":
            assert sum(1 for w in names if w[1:] == [colour, kind]) == 1
        elif mode == "size":
            assert s.targets[0].phrase == f"the {size} {colour} {kind}"
            assert sum(1 for w in names if w == [size, colour, kind]) == 1
            assert any(w[1:] == [colour, kind] and w[0] != size for w in names)
        elif mode == "relation":
            phrase = s.targets[0].phrase
            rel = next(r for r in ("left of", "right of", "above", "below") if f" {r} " in phrase)
            anchor_name = phrase.split(f" {rel} the ")[1].split()
            anchor = next(r for r in s.regions if r.phrase.split()[1:] == anchor_name)
            twins = [r for r in s.regions if r.phrase.split()[1:] == [colour, kind]]
            assert len(twins) == 2
            assert [_holds(rel, r.box, anchor.box) for r in twins].count(True) == 1
            assert _holds(rel, target.box, anchor.box)


def _named(sample) -> list:
    """The regions that the sample's phrase describes (it must single out one)."""
    phrase = sample.targets[0].phrase
    rel = next((r for r in ("left of", "right of", "above", "below") if f" {r} " in phrase), None)
    words = (phrase.split(f" {rel} the ")[0] if rel else phrase).split()[1:]
    fits = [r for r in sample.regions if r.phrase.split()[-len(words):] == words]
    if rel:
        anchor_words = phrase.split(f" {rel} the ")[1].split()
        anchors = [r for r in sample.regions if r.phrase.split()[1:] == anchor_words]
        assert len(anchors) == 1, phrase
        fits = [r for r in fits if _holds(rel, r.box, anchors[0].box)]
    return fits


def test_several_targets_per_picture_name_each_shape_once(tmp_path):
    samples = generate(tmp_path, 90, seed=5, max_shapes=3, targets_per_image=3)
    one = generate(tmp_path / "one", 30, seed=5, max_shapes=3)
    by_picture: dict[str, list] = {}
    for s in samples:
        assert [r.box for r in _named(s)] == [s.targets[0].box], s.targets[0].phrase
        by_picture.setdefault(s.messages[0].content[0].media, []).append(s)
    # The first sample of each picture is the one-per-picture sample of the same index.
    firsts = [s for s in samples if s.meta["index"] % 3 == 0]

    def key(x):
        return x.targets[0].phrase, x.targets[0].box.as_list()

    assert [key(f) for f in firsts] == [key(o) for o in one]
    shared = [group for group in by_picture.values() if len(group) > 1]
    assert len(shared) > 10
    for group in shared:
        # Each sample of a shared picture names another of its shapes: same pixels, another answer.
        assert len({tuple(g.targets[0].box.as_list()) for g in group}) == len(group)
        assert len(group) <= group[0].meta["n_shapes"]
    # Every sample comes from its own index; pictures with too few shapes are followed by fresh ones.
    assert len(by_picture) > 30 and all((tmp_path / rel).is_file() for rel in by_picture)
    with pytest.raises(ValueError, match="targets_per_image"):
        generate(tmp_path, 2, targets_per_image=0)


def test_grounding_answer_uses_given_formatters(tmp_path):
    def unit_answer(phrase, box, w, h):
        x1, y1, x2, y2 = coords.UNIT.to_values(box, w, h)
        return f"<ref>{phrase}</ref><box>({x1:.3f},{y1:.3f}),({x2:.3f},{y2:.3f})</box>"

    s = generate(tmp_path, 1, seed=0, answer=unit_answer, prompt=lambda p: f"Find <ref>{p}</ref>.")[0]
    t = s.targets[0]
    assert s.messages[0].content[1].text == f"Find <ref>{t.phrase}</ref>."
    assert s.messages[1].content[0].text == unit_answer(t.phrase, t.box, 64, 64)
    default = generate(tmp_path / "d", 1, seed=0)[0]
    assert default.messages[1].content[0].text == coords.plain_grounding_answer(t.phrase, t.box, 64, 64)


def test_toolqa_crops_the_target(tmp_path):
    samples = generate(tmp_path, 20, seed=2, kind="toolqa")
    for s in samples:
        roles = [m.role for m in s.messages]
        assert roles == ["user", "assistant", "tool", "assistant"]
        call = s.messages[1].content[-1]
        assert call.type == "tool_call" and call.tool == "crop"
        assert call.box == s.targets[0].box
        resp = s.messages[2].content[0]
        assert resp.type == "tool_response" and resp.source == s.messages[0].content[0].media and resp.box == call.box
        assert s.messages[3].content[0].text.endswith(f"<answer>{s.meta['answer']}</answer>")
        assert Sample.from_json(s.to_json()).to_dict() == s.to_dict()


def test_vocabulary_is_covered(tmp_path):
    samples = generate(tmp_path, 200, seed=5, max_shapes=3)
    kinds = Counter(r.phrase.split()[2] for s in samples for r in s.regions)
    colours = Counter(r.phrase.split()[1] for s in samples for r in s.regions)
    assert set(kinds) == set(KINDS) and set(colours) == set(COLOURS)


def test_bad_arguments_and_crowded_images(tmp_path):
    with pytest.raises(ValueError, match="max_shapes"):
        generate(tmp_path, 1, max_shapes=30)
    with pytest.raises(ValueError, match="kind"):
        generate(tmp_path, 1, kind="captions")
    # many shapes in a small image still give valid, non-overlapping scenes (or a clear error)
    samples = generate(tmp_path, 10, seed=0, image_size=96, max_shapes=6)
    for s in samples:
        boxes = [r.box for r in s.regions]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a.x2 <= b.x1 or b.x2 <= a.x1 or a.y2 <= b.y1 or b.y2 <= a.y1
    with pytest.raises(RuntimeError, match="cannot place"):
        generate(tmp_path, 30, seed=0, image_size=16, max_shapes=12)


def test_grounding_mixed_teaches_the_crop_call_and_never_the_crop(tmp_path, tiny_internvl):
    from transformers import AutoProcessor

    from vlm_train.data.synthetic import crop_region
    from vlm_train.models import get_family
    from vlm_train.models.base import InputsConfig

    samples = generate(tmp_path, 40, seed=4, image_size=128, kind="grounding_mixed", crop_fraction=0.5)
    crops = [s for s in samples if s.meta["kind"] == "grounding_crop"]
    direct = [s for s in samples if s.meta["kind"] == "grounding"]
    assert 10 <= len(crops) <= 30 and len(crops) + len(direct) == 40
    assert all([m.role for m in s.messages] == ["user", "assistant"] for s in direct)
    for s in crops:
        assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant"]
        call, resp, t = s.messages[1].content[-1], s.messages[2].content[0], s.targets[0].box
        assert call.type == "tool_call" and call.tool == "crop" and call.box == crop_region(t, 128)
        # The crop holds the named shape, with context around it: the answer is not the call's box.
        assert call.box.x1 <= t.x1 and call.box.y1 <= t.y1 and call.box.x2 >= t.x2 and call.box.y2 >= t.y2
        assert call.box != t
        assert resp.type == "tool_response" and resp.source == s.messages[0].content[0].media and resp.box == call.box
        assert s.messages[3].content[0].text == s.meta["answer"] and s.targets[0].phrase in s.meta["answer"]
    # Through the family's collator: the call and the answer are learned, the crop turn never.
    proc = AutoProcessor.from_pretrained(tiny_internvl)
    tok = proc.tokenizer
    batch = get_family("internvl").make_inputs(proc, InputsConfig(image_roots=(str(tmp_path),)))(crops[:2])
    for s, ids, labels in zip(crops[:2], batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        learned = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
        box = coords.THOUSANDTHS.to_values(s.messages[1].content[-1].box, 128, 128)
        call = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": ' + str(box) + "}}</tool_call>"
        assert learned == f"{call}<|im_end|>{s.meta['answer']}<|im_end|>"
        start = ids.index(tok.convert_tokens_to_ids("<tool_response>"))
        end = ids.index(tok.convert_tokens_to_ids("</tool_response>"))
        assert all(lab == -100 for lab in labels[start : end + 2])  # the turn and its <|im_end|>


def test_quick_start_sft_data_holds_crop_tool_samples(repo, tmp_path):
    from vlm_train.config import load_config

    syn = load_config(repo / "configs/debug/internvl_tiny_pipeline.yaml").data.synthetic
    samples = generate(tmp_path, 64, seed=syn.seed, image_size=syn.image_size, max_shapes=syn.max_shapes,
                       kind=syn.kind, crop_fraction=syn.crop_fraction)
    share = sum(any(m.role == "tool" for m in s.messages) for s in samples) / len(samples)
    # GRPO can only reinforce calls the policy makes: SFT must teach calling the tool.
    assert 0.5 <= share < 1.0, share


def test_text_first_puts_the_phrase_before_the_image(tmp_path, tiny_internvl):
    from transformers import AutoProcessor

    from vlm_train.models import get_family
    from vlm_train.models.base import InputsConfig

    a = generate(tmp_path / "a", 12, seed=2, image_size=64, kind="grounding_mixed", crop_fraction=0.5)
    b = generate(tmp_path / "b", 12, seed=2, image_size=64, kind="grounding_mixed", crop_fraction=0.5, text_first=True)
    for x, y in zip(a, b, strict=True):
        # The same scenes, phrases and answers; only the user turn's order differs.
        assert [p.type for p in x.messages[0].content] == ["image", "text"]
        assert [p.type for p in y.messages[0].content] == ["text", "image"]
        assert x.messages[0].content[::-1] == y.messages[0].content and x.messages[1:] == y.messages[1:]
        assert x.targets == y.targets
    # Through the family's collator the phrase's tokens precede the image's, so in a causal
    # model the image tokens can attend to the phrase.
    proc = AutoProcessor.from_pretrained(tiny_internvl)
    tok = proc.tokenizer
    batch = get_family("internvl").make_inputs(proc, InputsConfig(image_roots=(str(tmp_path / "b"),)))(b[:1])
    ids = batch["input_ids"][0].tolist()
    image = ids.index(tok.convert_tokens_to_ids("<IMG_CONTEXT>"))
    assert b[0].targets[0].phrase in tok.decode(ids[:image])
    batch = get_family("internvl").make_inputs(proc, InputsConfig(image_roots=(str(tmp_path / "a"),)))(a[:1])
    ids = batch["input_ids"][0].tolist()
    assert a[0].targets[0].phrase not in tok.decode(ids[: ids.index(tok.convert_tokens_to_ids("<IMG_CONTEXT>"))])


def test_pattern_twins_differ_only_in_their_stripes(tmp_path):
    samples = generate(tmp_path, 40, seed=6, image_size=256, max_shapes=3, modes=("pattern",), min_shapes=2)
    assert {s.meta["mode"] for s in samples} == {"pattern"}
    assert {s.meta["n_shapes"] for s in samples} == {2, 3}
    words = Counter()
    for s in samples:
        phrase = s.targets[0].phrase  # "the striped red circle"
        _, pattern, colour, kind = phrase.split()
        words[pattern] += 1
        twins = [r for r in s.regions if r.phrase.endswith(f"{colour} {kind}")]
        # Two of one kind, colour and size class; only the word "striped" names one of them.
        assert len(twins) == 2 and {r.phrase.split()[0] for r in twins} == {"small"}
        assert sorted("striped" in r.phrase for r in twins) == [False, True]
        named = next(r for r in twins if ("striped" in r.phrase) == (pattern == "striped"))
        assert named.box == s.targets[0].box
    assert set(words) == {"plain", "striped"}


def test_stripes_vanish_in_the_view_and_show_in_the_crop(tiny_internvl):
    import random
    from dataclasses import replace

    from transformers import AutoProcessor

    from vlm_train.data.synthetic import draw, make_scene

    image_processor = AutoProcessor.from_pretrained(tiny_internvl).image_processor
    side = image_processor.size["height"]  # the model's one view (the benchmark's max_tiles 1)

    def pixels(im):
        return image_processor([im], crop_to_patches=False, return_tensors="pt")["pixel_values"][0]

    def stripe_signal(canvas: int, crop: bool) -> float:
        """Mean |striped - plain| of the model's pixels over the striped shape, 20 scenes."""
        out = []
        for i in range(20):
            scene = make_scene(random.Random(f"stripes/{i}"), canvas, 2, ("pattern",), 2)
            plain = replace(scene, shapes=[replace(s, pattern="plain") for s in scene.shapes])
            a, b = draw(scene, canvas, (240, 240, 240)), draw(plain, canvas, (240, 240, 240))
            box = next(s.box for s in scene.shapes if s.pattern == "striped")
            x0, y0, x1, y1 = (0, 0, canvas, canvas)
            if crop:  # what the crop tool returns for a call on the twins' quadrant
                r = scene.zone
                x0, y0, x1, y1 = int(r.x1), int(r.y1), int(r.x2), int(r.y2)
                a, b = a.crop((x0, y0, x1, y1)), b.crop((x0, y0, x1, y1))
            sx, sy = side / (x1 - x0), side / (y1 - y0)
            c0, r0, c1, r1 = (int((box.x1 - x0) * sx), int((box.y1 - y0) * sy),
                              int((box.x2 - x0) * sx), int((box.y2 - y0) * sy))
            out.append((pixels(a) - pixels(b)).abs()[:, r0:r1, c0:c1].mean().item())
        return sum(out) / len(out)

    view, zoom, half = stripe_signal(4 * side, False), stripe_signal(4 * side, True), stripe_signal(2 * side, False)
    # On a canvas 4x the view's side the stripes average away (measured 0.09); the crop of the
    # twins' quadrant shows them (0.35), as does a view of a canvas 2x its side (0.35): it is
    # the resolution that hides them, not a faint pattern.
    assert view < 0.15 and zoom > 0.25 and half > 0.25 and zoom > 3 * view, (view, zoom, half)


def test_pattern_twins_share_a_quadrant_and_the_crop_is_that_quadrant(tmp_path):
    samples = generate(tmp_path, 40, seed=7, image_size=256, max_shapes=3, modes=("pattern",), min_shapes=2,
                       kind="grounding_crop")
    quadrants = Counter()
    for s in samples:
        call = s.messages[1].content[-1].box
        t = s.targets[0].box
        colour_kind = s.targets[0].phrase.split()[-2:]
        twin = next(r.box for r in s.regions if r.box != t and r.phrase.split()[-2:] == colour_kind)
        # One of the four quadrants, holding both twins: a crop a policy can aim from the view.
        assert call.x2 - call.x1 == call.y2 - call.y1 == 128 and call.x1 in (0, 128) and call.y1 in (0, 128)
        for b in (t, twin):
            assert call.x1 <= b.x1 and b.x2 <= call.x2 and call.y1 <= b.y1 and b.y2 <= call.y2
        assert s.meta["crop_box"] == call.as_list()
        assert s.messages[3].content[0].text == s.meta["answer"] == coords.plain_grounding_answer(
            s.targets[0].phrase, t, 256, 256)
        quadrants[(call.x1, call.y1)] += 1
    assert len(quadrants) == 4
    # Other modes crop around the named shape.
    from vlm_train.data.synthetic import crop_region

    plain = generate(tmp_path / "b", 20, seed=7, image_size=128, max_shapes=3, kind="grounding_crop")
    assert all(s.messages[1].content[-1].box == crop_region(s.targets[0].box, 128) for s in plain)


def test_modes_and_min_shapes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="modes"):
        generate(tmp_path, 1, modes=("texture",))
    with pytest.raises(ValueError, match="min_shapes"):
        generate(tmp_path, 1, max_shapes=2, min_shapes=3)
    # A mode that needs more shapes than a scene has falls back to colour.
    samples = generate(tmp_path, 20, seed=1, max_shapes=2, modes=("relation",), min_shapes=2)
    assert {s.meta["mode"] for s in samples} == {"colour"}
