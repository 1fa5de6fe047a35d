"""Drawing the session's outputs in the compare view: the whole result, or a preview over
the dimmed original, and on the "before" side the original or the rival preview."""

from __future__ import annotations

from .compare import CompareView
from .display import DisplayImage
from .session import PREVIEW_DIM, Session


class OutputsView:
    """Puts what ``session`` holds into ``compare`` (the dimmed base is made once per
    picture)."""

    def __init__(self, compare: CompareView, session: Session) -> None:
        self.compare = compare
        self.session = session
        self._base: tuple[object, DisplayImage] | None = None

    def show_latest(self, rival_on: bool) -> None:
        """Show the picture with its last finished output: the whole result, the preview
        over the original, or nothing beside the original."""
        pic, s, c = self.session.picture, self.session, self.compare
        if pic is None:
            return
        if s.latest == "result" and s.result is not None:
            d = s.result.display
            c.set_after(d, s.result_label(), scene=(d.width, d.height))
        elif s.latest == "preview" and s.preview is not None:
            p, k = s.preview, s.preview.scale
            x, y, w, h = p.region
            c.set_after(self.preview_base(), s.preview_label(p),
                        scene=(pic.display.width * k, pic.display.height * k),
                        inset=p.display, inset_rect=(x * k, y * k, w * k, h * k))
        elif c.after is not None and c.before is not None:
            c.set_before(pic.display, self.original_label())
        self.show_before(rival_on)

    def show_before(self, rival_on: bool) -> None:
        """The "before" side: the original, or the previous preview of the same region
        (another model or clean-up) when ``rival_on``: model against model."""
        pic, s, c = self.session.picture, self.session, self.compare
        if pic is None or c.before is None:
            return
        rival = s.rival if s.latest == "preview" and rival_on else None
        if rival is not None:
            k = rival.scale
            x, y, w, h = rival.region
            c.set_before_layer(self.preview_base(), s.preview_label(rival),
                               inset=rival.display, inset_rect=(x * k, y * k, w * k, h * k))
        elif c.before.inset is not None:
            c.set_before_layer(pic.display, self.original_label())

    def original_label(self) -> str:
        """The original's label, saying how it is enlarged."""
        return self.session.original_label(self.compare.smooth_before)

    def preview_base(self) -> DisplayImage:
        """The original, dimmed: what surrounds a preview."""
        pic = self.session.picture
        if self._base is None or self._base[0] is not pic:
            base = pic.display.copy()
            base.dim(PREVIEW_DIM)
            self._base = (pic, base)
        return self._base[1]
