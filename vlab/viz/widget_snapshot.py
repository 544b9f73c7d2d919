"""A widget as static HTML, drawn from its saved state: what the course site shows in its place.

A notebook executed with `store_widget_state` keeps every widget model's state in its metadata
(`application/vnd.jupyter.widget-state+json`). Rendering that state live needs the ipywidgets
HTML manager from a CDN; this draws the same controls and panes as plain, disabled HTML, so a
page shows what the widget showed when the notebook ran, with no script and no network.

    snapshot_html(states, model_id)   # states: {model_id: {"model_name": ..., "state": {...}}}
"""

from __future__ import annotations

import html

MODEL_PREFIX = "IPY_MODEL_"
CAPTION = "a snapshot of a live widget: open the notebook in JupyterLab to use it"


def snapshot_html(states: dict, model_id: str) -> str:
    """The widget `model_id` and everything inside it, as static HTML, in a captioned frame."""
    return (f'<div class="vlab-widget-snapshot" title="{CAPTION}" style="border-left:3px solid #ccc;'
            f'padding-left:8px">{_render(states, model_id)}'
            f'<div style="color:#888;font-size:smaller">({CAPTION})</div></div>')


def _render(states: dict, model_id: str) -> str:
    model = states.get(model_id.removeprefix(MODEL_PREFIX))
    if model is None:
        return "<i>(this widget's state was not saved)</i>"
    name, state = model["model_name"], model["state"]
    draw = _DRAW.get(name)
    return draw(states, state) if draw else f"<i>({html.escape(name.removesuffix('Model'))} widget)</i>"


def _box(direction: str):
    def draw(states: dict, state: dict) -> str:
        children = "".join(f"<div>{_render(states, child)}</div>" for child in state.get("children", []))
        return f'<div style="display:flex;flex-direction:{direction};gap:6px;align-items:baseline">{children}</div>'
    return draw


def _label(state: dict) -> str:
    return html.escape(state.get("description", ""))


def _checkbox(_states: dict, state: dict) -> str:
    checked = " checked" if state.get("value") else ""
    return f'<label><input type="checkbox" disabled{checked}> {_label(state)}</label>'


def _choice(_states: dict, state: dict) -> str:
    labels, index = state.get("_options_labels", ()), state.get("index")
    chosen = html.escape(str(labels[index])) if index is not None and 0 <= index < len(labels) else ""
    return f"<label>{_label(state)} <select disabled><option>{chosen}</option></select></label>"


def _value(_states: dict, state: dict) -> str:
    value = html.escape(str(state.get("value", "")))
    return f'<label>{_label(state)} <input disabled value="{value}" size="{max(len(value), 4)}"></label>'


def _slider(_states: dict, state: dict) -> str:
    low, high, value = (state.get(k) for k in ("min", "max", "value"))
    return (f'<label>{_label(state)} <input type="range" disabled min="{low}" max="{high}" value="{value}"> '
            f"{html.escape(str(value))}</label>")


def _text(_states: dict, state: dict) -> str:
    return f"{_label(state)} {html.escape(str(state.get('value', '')))}"


def _button(_states: dict, state: dict) -> str:
    return f"<button disabled>{_label(state)}</button>"


def _html(_states: dict, state: dict) -> str:
    return f"{_label(state)} {state.get('value', '')}"  # the widget's own HTML, which vlab wrote


def _output(_states: dict, state: dict) -> str:
    shown = []
    for output in state.get("outputs", []):
        data = output.get("data", {})
        if "text/html" in data:
            shown.append("".join(data["text/html"]))
        else:
            text = output.get("text") or "".join(data.get("text/plain", ""))
            shown.append(f"<pre>{html.escape(''.join(text))}</pre>")
    return "".join(shown)


_DRAW = {
    "VBoxModel": _box("column"), "BoxModel": _box("column"), "GridBoxModel": _box("column"),
    "HBoxModel": _box("row"),
    "CheckboxModel": _checkbox, "ToggleButtonModel": _checkbox,
    "DropdownModel": _choice, "SelectModel": _choice, "RadioButtonsModel": _choice, "ToggleButtonsModel": _choice,
    "TextModel": _value, "TextareaModel": _value, "IntTextModel": _value, "FloatTextModel": _value,
    "BoundedIntTextModel": _value, "BoundedFloatTextModel": _value, "LabelModel": _text,
    "IntSliderModel": _slider, "FloatSliderModel": _slider,
    "ButtonModel": _button,
    "HTMLModel": _html, "HTMLMathModel": _html,
    "OutputModel": _output,
}
