"""The detail <-> clean-up slider: on for a model with both versions, off with a reason."""

from __future__ import annotations


def _panel(qtbot, tmp_path):
    from app.options_panel import OptionsPanel
    from app.settings import Settings

    panel = OptionsPanel(Settings(tmp_path / "settings.ini"))
    qtbot.addWidget(panel)
    return panel


def test_slider_follows_the_chosen_model_and_says_why_when_off(qtbot, tmp_path) -> None:
    panel = _panel(qtbot, tmp_path)
    panel.select_model("finescale-asid-x4-photo")
    assert panel.clean_up.isEnabled()
    assert panel.choice().clean_up == 0.75  # the photo model's catalogue default
    panel.clean_up.setValue(40)
    assert panel.choice().clean_up == 0.4
    assert "Clean-up 0.40: a blend of both" in panel.clean_up_label.text()
    panel.select_model("finescale-asid-x2-photo")
    assert not panel.clean_up.isEnabled() and panel.choice().clean_up is None
    assert "no paper-exact twin" in panel.clean_up_reason.text()
    assert not panel.clean_up_reason.isHidden()


def test_the_value_is_remembered_and_the_picker_shows_the_kind(qtbot, tmp_path) -> None:
    panel = _panel(qtbot, tmp_path)
    panel.select_model("finescale-asid-x4-photo")
    panel.clean_up.setValue(75)
    again = _panel(qtbot, tmp_path)
    again.select_model("finescale-asid-x4-photo")
    assert again.choice().clean_up == 0.75
    texts = [again.model_combo.itemText(i) for i in range(again.model_combo.count())]
    assert any("[photo]" in t and "ASID x4 photo" in t for t in texts)
    assert any("[paper-exact]" in t for t in texts)


def test_the_job_carries_the_clean_up_value_to_the_model(qtbot, tmp_path) -> None:
    import threading

    import torch

    from app.tasks import prepare_model
    from sr_core import load_model

    model = prepare_model("finescale-asid-x4-photo", threading.Event(), lambda t: None,
                          lambda d, t: None, 0.0)
    paper = load_model("finescale-asid-x4")
    a, b = model.net.state_dict(), paper.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
