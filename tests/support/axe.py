"""axe-core accessibility checks in a Playwright page."""

from __future__ import annotations

# axe-core (the copy axe-playwright-python ships), run in the page; only what a test asserts comes back: each serious
# or critical violation's rule, impact and first three targets (the whole result, with the rules that passed, costs
# about a third of a run to serialize on a long page).
AXE_RUN = """() => axe.run(document, {resultTypes: ["violations"]}).then(results => results.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => [v.id, v.impact, v.nodes.slice(0, 3).map(n => n.target)]))"""


def axe_violations(page) -> list:
    """The page's serious and critical axe-core violations, as [(rule, impact, [targets])]."""
    from axe_playwright_python.sync_playwright import Axe

    global _AXE_SCRIPT
    if _AXE_SCRIPT is None:
        _AXE_SCRIPT = Axe().axe_script
    page.evaluate(_AXE_SCRIPT)
    return [tuple(v) for v in page.evaluate(AXE_RUN)]


_AXE_SCRIPT: str | None = None
