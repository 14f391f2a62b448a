"""The HTML step-through in a real browser: headless Chromium steps through a bundled trace by keyboard.

Skipped, with the reason, only where Debian's chromium and chromedriver or
the pinned Selenium are missing (``make test`` installs them).
"""

from __future__ import annotations

import pytest
from browser import chromium, ink, skip_reason

from rmapcheck.check.trace import load_trace
from rmapcheck.commands.common import BUNDLED_TRACES
from rmapcheck.report.html import record, trace_page

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

#: the 2026 mremap use-after-free, found on linux-6.18.0
TRACE = BUNDLED_TRACES / "linux-6.18.0-use-after-free-check_invariants-497a5d7d.json"


def _names(snap):
    return ({v["name"] for p in snap["processes"] for v in p["vmas"]} | {a["name"] for a in snap["anon_vmas"]}
            | {f["name"] for f in snap["folios"]})


def test_page_steps_through_a_bundled_trace_by_keyboard(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    t = load_trace(str(TRACE))
    rec = record(t.scenario, t.design, until=(t.property, t.function))
    assert rec.findings and rec.findings[0].object == "anon_vma#0"
    finding = rec.findings[0]
    page = tmp_path / "trace.html"
    page.write_text(trace_page(str(TRACE), t))
    with chromium() as d:
        d.get(page.as_uri())
        body = d.find_element(By.TAG_NAME, "body")
        keys = ActionChains(d)
        keys.send_keys(Keys.END).perform()
        keys.send_keys(Keys.HOME).perform()
        seen_highlight = []
        for i, snap in enumerate(rec.steps):
            if i:
                ActionChains(d).send_keys(Keys.ARROW_RIGHT).perform()
            step = snap["step"]
            assert body.get_attribute("data-step") == str(step)
            assert snap["op"] in d.find_element(By.ID, "op").text
            space = d.find_element(By.ID, "space")
            for proc in snap["processes"]:
                assert proc["name"] in space.text
                for v in proc["vmas"]:
                    drawn = space.find_elements(By.CSS_SELECTOR, f'g[data-obj="{v["name"]}"]')
                    assert drawn, f"step {step}: {v['name']} ({v['label']}) not drawn"
                    letter = v["label"].split()[-1]
                    assert f"{letter} {v['prot']}" in drawn[0].text
            forest = d.find_element(By.ID, "forest")
            for av in snap["anon_vmas"]:
                node = forest.find_elements(By.CSS_SELECTOR, f'g[data-obj="{av["name"]}"]')
                assert node and av["name"] in node[0].text, f"step {step}: {av['name']} not in the forest"
            # The finding's object is outlined wherever it is drawn, from its allocation on.
            obj = finding.object
            outlined = d.find_elements(By.CSS_SELECTOR, f'#space .hl[data-obj="{obj}"], #forest .hl[data-obj="{obj}"]')
            if obj in _names(snap):
                assert outlined, f"step {step}: {obj} is not highlighted"
                seen_highlight.append(step)
            else:
                assert not outlined
            here = " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, "#finding li.here"))
            if step == finding.allocated[0]:
                assert f"allocated at step {step}" in here
            if step == finding.freed[0]:
                assert f"freed at step {step}" in here
            if step == finding.step:
                assert f"found after step {step}" in here
                assert "check_invariants" in here
        assert seen_highlight[0] == finding.allocated[0] and seen_highlight[-1] == finding.step
        # The buttons step too.
        d.find_element(By.ID, "prev").click()
        assert body.get_attribute("data-step") == str(rec.steps[-2]["step"])
        d.find_element(By.ID, "next").click()
        png = d.get_screenshot_as_png()
    (tmp_path / "trace.png").write_bytes(png)
    covered, colours = ink(png)
    assert covered > 0.05 and colours > 8, f"the screenshot looks blank: {covered:.1%} ink, {colours} colours"
