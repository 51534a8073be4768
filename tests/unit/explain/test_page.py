"""The explanation page in a real headless browser (Debian's chromium), and the terminal shading."""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from shoprank.explain import html, terminal
from shoprank.explain.explanation import Explained
from shoprank.explain.words import PairAttribution

QUERY = "cordless drill"
PRODUCTS = ["DEWALT 20V MAX cordless drill kit", "Behr white interior paint <1 gal>"]


def explained(products=PRODUCTS) -> list[Explained]:
    out = []
    for i, text in enumerate(products):
        n = len(text.split())
        scores = np.linspace(1.5, -0.8, n) if i == 0 else -np.linspace(0.1, 0.6, n)
        out.append(Explained(i, i + 1, 0.9 - 0.5 * i,
                             PairAttribution(QUERY, text, np.array([0.4, 1.2]), scores, 2.0 - i, "occlusion"),
                             {"final_position": i + 1, "final_score": 0.9 - 0.5 * i,
                              "score_before_rules": None, "rules": None}))
    return out


class Words(HTMLParser):
    """Text of the shaded word spans, in document order."""

    def __init__(self):
        super().__init__()
        self.words, self._in = [], False

    def handle_starttag(self, tag, attrs):
        self._in = tag == "span" and ("class", "w") in attrs

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in:
            self.words.append(data)


def test_page_holds_every_word_escaped_and_shaded():
    page = html.render(QUERY, explained())
    assert "&lt;1" in page and "<1 gal>" not in page
    parser = Words()
    parser.feed(page)
    # Per item: product words then query words, best first.
    assert parser.words[:6] == PRODUCTS[0].split()
    assert parser.words[6:8] == QUERY.split()
    assert 'data-attribution="1.5000"' in page and "rgba(220,38,38" in page


def test_terminal_shading():
    text = terminal.render(QUERY, explained(), colour=True)
    assert "\x1b[48;2;" in text and "DEWALT" in text
    plain = terminal.render(QUERY, explained(), colour=False)
    assert "\x1b[" not in plain and "DEWALT(+1.50)" in plain
    assert plain.index("DEWALT") < plain.index("Behr")  # best first


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, cwd):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={cwd / 'profile'}", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium (Debian package) missing: scripts/system_packages.sh installs it")
def test_page_renders_in_a_headless_browser(tmp_path):
    from PIL import Image

    shots = {}
    for name, products in (("with", PRODUCTS), ("without", ["", ""])):
        page = tmp_path / f"{name}.html"
        page.write_text(html.render(QUERY, explained(products)))
        shot = tmp_path / f"{name}.png"
        done = _chromium("--window-size=1000,700", f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
        assert shot.exists(), done.stderr[-2000:]
        shots[name] = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        if name == "with":
            dom = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout
            parser = Words()
            parser.feed(dom)
            assert " ".join(parser.words[:6]) == PRODUCTS[0]  # the browser's DOM holds the product text
    with_text, without = shots["with"], shots["without"]
    assert with_text.std() > 10  # not a blank page
    green = (with_text[..., 1] > with_text[..., 0] + 40) & (with_text[..., 1] > with_text[..., 2] + 40)
    assert green.sum() > 200  # the top words' shading is drawn
    # The product words are what differs between the two pages, and they are drawn.
    assert (np.abs(with_text - without).sum(axis=-1) > 60).sum() > 1000
