"""`make book` / `vlab site`: every chapter executed into a static page with its diagrams and widget state."""

import pytest

from vlab import course_site


@pytest.mark.timeout(900)
def test_the_site_has_every_chapter_with_its_diagrams(tmp_path):
    pages = course_site.build(tmp_path, progress=lambda _: None)
    index = (tmp_path / "index.html").read_text()
    for chapter in course_site.chapters():
        page = tmp_path / f"{chapter.stem}.html"
        assert page in pages and f'href="{page.name}"' in index
    for chapter in ("01_physical_machine", "02_trap_and_emulate", "03_stage2"):
        html = (tmp_path / f"{chapter}.html").read_text()
        assert html.count('data-mime-type="image/svg+xml"') >= 1, f"{chapter}: no diagram on the page"
        assert "application/vnd.jupyter.widget-state+json" in html, f"{chapter}: widgets lost their state"
        assert "Traceback" not in html
