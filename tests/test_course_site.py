"""`make book` / `vlab site`: every chapter executed into a static page with its diagrams and a
snapshot of each widget, readable offline (nothing fetched from elsewhere)."""

import pytest
from pictures import MAX_WIDTH_PT, svg_sizes_pt
from servers import fetched_from_elsewhere

from vlab import course_site

# What each chapter's main widget shows in its snapshot (nbconvert rewrites attributes: match around them).
SNAPSHOT_SHOWS = {"01_physical_machine": ">Step</button>",
                  "02_trap_and_emulate": "sensitive.S with traps",
                  "03_stage2": "guest VA <input"}


@pytest.mark.timeout(900)
def test_the_site_has_every_chapter_with_its_diagrams_and_widget_snapshots(tmp_path):
    pages = course_site.build(tmp_path, progress=lambda _: None)
    index = (tmp_path / "index.html").read_text()
    for chapter in course_site.chapters():
        page = tmp_path / f"{chapter.stem}.html"
        assert page in pages and f'href="{page.name}"' in index
        html = page.read_text()
        assert "Traceback" not in html
        assert not fetched_from_elsewhere(html), "fetches from elsewhere"
        assert "application/vnd.jupyter.widget-view+json" not in html, f"{chapter.stem}: a widget left blank"
        too_wide = [w for w, _ in svg_sizes_pt(html) if w > MAX_WIDTH_PT]  # diagrams and widget pictures alike
        assert not too_wide, f"{chapter.stem}: pictures wider than {MAX_WIDTH_PT} pt: {too_wide}"
    for chapter, shows in SNAPSHOT_SHOWS.items():
        html = (tmp_path / f"{chapter}.html").read_text()
        assert html.count('data-mime-type="image/svg+xml"') >= 1, f"{chapter}: no diagram on the page"
        assert svg_sizes_pt(html), f"{chapter}: no graphviz picture found to measure"
        assert 'vlab-widget-snapshot"' in html and shows in html, f"{chapter}: no widget snapshot"
