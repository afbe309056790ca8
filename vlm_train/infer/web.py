"""`vlm-train web MODEL [--host 127.0.0.1 --port 7860]`: a Gradio chat demo of a trained model.

Upload an image (or a video), ask, and watch the answer stream in; thinking on/off with its
budget; the crop tool runs live (the GRPO rollout code), each call shown with the crop it
returned; the answer's boxes are drawn on the image. Binds to loopback unless ``--host`` says
otherwise: the demo has no authentication, so expose it only behind one.
Needs the optional extra: ``pip install -e '.[web]'``.
"""

from __future__ import annotations

import argparse
import html
import queue
import sys
import threading
from typing import Any

from vlm_train.config import InferConfig, JobConfig, ModelConfig


class QueueStreamer:
    """A transformers streamer that queues decoded tokens across the rollout's generate calls
    (each call first puts its prompt, which is skipped)."""

    def __init__(self, tokenizer: Any):
        self.tok, self.q, self._prompt = tokenizer, queue.Queue(), True

    def put(self, value: Any) -> None:
        if self._prompt:
            self._prompt = False
            return
        self.q.put(self.tok.decode(value.reshape(-1).tolist(), skip_special_tokens=False))

    def end(self) -> None:
        self._prompt = True


def draw_answer(image_path: str, boxes: list[list[float]]):
    """The uploaded image with the answer's boxes in red (line width grows with the image)."""
    from PIL import Image, ImageDraw

    im = Image.open(image_path).convert("RGB")
    scale = max(1, 384 // max(im.size))  # small images are enlarged so the box stays visible
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    for b in boxes:
        d.rectangle([v * scale for v in b], outline=(255, 0, 0), width=max(3, max(im.size) // 60))
    return im


def shown(text: str) -> str:
    """Model text as the chat shows it: tags such as <box> and <tool_call> kept visible."""
    return html.escape(text).replace("\n", "  \n")


def build_app(engine: Any, max_budget: int = 2048):
    import gradio as gr

    from vlm_train.infer.prompts import PromptError, chat_prompt

    def respond(question, image, video, thinking, budget, history, turns):
        history, turns = list(history or []), list(turns or [])
        if not (question or "").strip():
            gr.Warning("Type a question first.")
            yield history, turns, None, []
            return
        try:
            sample, roots = chat_prompt(turns, question, [image] if image else [], video or None,
                                        engine.cfg.data.max_image_pixels)
        except PromptError as e:
            history += [{"role": "user", "content": shown(question)}, {"role": "assistant", "content": f"error: {shown(str(e))}"}]
            yield history, turns, None, []
            return
        history.append({"role": "user", "content": shown(question)})
        streamer = QueueStreamer(engine.tok)
        result: dict[str, Any] = {}

        def work():
            try:
                result["record"] = engine([sample], thinking=bool(thinking), budget=int(budget) if thinking else None,
                                          image_roots=roots, streamer=streamer)[0]
            except Exception as e:  # shown in the chat; the demo keeps serving
                result["error"] = f"{type(e).__name__}: {e}"
            streamer.q.put(None)

        threading.Thread(target=work, daemon=True).start()
        text = ""
        while (piece := streamer.q.get()) is not None:
            text += piece
            yield history + [{"role": "assistant", "content": shown(text)}], turns, None, []
        if "error" in result:
            yield history + [{"role": "assistant", "content": f"error: {shown(result['error'])}"}], turns, None, []
            return
        rec = result["record"]
        boxes = [b["pixels"] for b in rec["answer_boxes"]]
        summary = "  \n".join(f"box {i + 1}: {b}" for i, b in enumerate(boxes)) or "no box in the answer"
        history.append({"role": "assistant", "content": shown(rec["response"]) + "  \n\n" + summary})
        crops = [(im, f"crop {i + 1}: {c['box']}") for i, (im, c) in
                 enumerate(zip(rec["_crops"], [c for c in rec["tool_calls"] if c["executed"]], strict=False))]
        turns.append((question, rec["response"]))
        yield history, turns, draw_answer(image, boxes) if image else None, crops

    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: works offline
    with gr.Blocks(title="vlm_train demo", theme=theme) as app:
        gr.Markdown(f"### {engine.family.name}: `{engine.cfg.model.path}`")
        turns = gr.State([])
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="filepath", label="Image", elem_id="image_in")
                video = gr.Video(label="Video (instead of an image)", elem_id="video_in")
                thinking = gr.Checkbox(label="Thinking", value=False, elem_id="thinking")
                budget = gr.Slider(16, max_budget, value=min(256, max_budget), step=16, label="Thinking budget (tokens)")
            with gr.Column(scale=2):
                chat = gr.Chatbot(label="Chat", elem_id="chat", height=360)
                question = gr.Textbox(label="Question", elem_id="question", lines=2)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    clear = gr.Button("Clear", elem_id="clear")
        with gr.Row():
            answer = gr.Image(label="Answer boxes", elem_id="answer_image", interactive=False, format="png")
            crops = gr.Gallery(label="Crop-tool calls", elem_id="crops", columns=4, height=240)
        outputs = [chat, turns, answer, crops]
        send.click(respond, [question, image, video, thinking, budget, chat, turns], outputs)
        question.submit(respond, [question, image, video, thinking, budget, chat, turns], outputs)
        clear.click(lambda: ([], [], None, []), None, outputs)
    return app


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vlm-train web", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="run directory, checkpoint, export or LoRA adapter")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--max-calls", type=int, default=2, help="crop-tool calls per answer (0: tool off)")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    a = ap.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the web demo needs gradio: pip install -e '.[web]'", file=sys.stderr)
        return 2
    from vlm_train.infer.engine import Engine
    from vlm_train.infer.source import SourceError, resolve

    try:
        src = resolve(a.model)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = JobConfig()
    cfg.model = ModelConfig(family=src.family.name, path=str(src.weights), dtype=a.dtype)
    cfg.infer = InferConfig(max_new_tokens=a.max_new_tokens, tools=a.max_calls > 0)
    cfg.tools.max_calls, cfg.data.num_frames = max(a.max_calls, 0), a.num_frames
    engine = Engine(cfg, [])
    build_app(engine).queue().launch(server_name=a.host, server_port=a.port, show_error=True)
    return 0
