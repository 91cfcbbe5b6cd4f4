"""The operators' console in a real browser: Debian's Chromium driven by Playwright for Python.

Run by tests/integration/console.rs against a gateway it started (its console signing in with the
development issuer):

    python3 tests/browser/console.py BASE_URL SCREENSHOT_DIR AXE_JS

An operator signs in, reads the policy in force, edits a new version with a mistake and sees it
at its line, fixes it, reads the access delta, applies it, rolls back and signs out; a researcher
is refused the console; a citizen reads who consulted their record (`/moi`). Every page is photographed (SCREENSHOT_DIR) and checked by axe-core,
injected in a second context of the same browser that bypasses the pages' Content-Security-Policy
(the pages themselves allow no script): no serious or critical violation may remain.
Exits 1 with the reasons on any failure.
"""

import json
import os
import re
import sys

from playwright.sync_api import sync_playwright

BASE, SHOTS, AXE = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(SHOTS, exist_ok=True)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
failures = []
checked = []


def expect(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED:", what, flush=True)


def accessibility(auditor, page, name):
    """axe-core over the page's HTML, rendered at its URL in the auditing context."""
    html = page.content()
    # At the gateway's origin (its stylesheet's URL), so that the page's own stylesheet applies.
    auditor.goto(BASE + "/console/static/console.css")
    auditor.set_content(html)
    auditor.add_script_tag(path=AXE)
    result = auditor.evaluate(
        "async () => { const r = await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}); "
        "return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length})); }"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    checked.append({"page": name, "violations": result})
    expect(not serious, f"{name}: serious or critical accessibility violations: {json.dumps(serious)}")


def shot(page, auditor, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)
    accessibility(auditor, page, name)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
    context = browser.new_context(ignore_https_errors=True, locale="fr-FR", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)

    # Sign in as the operator from the issuer's page.
    page.goto(BASE + "/console")
    expect("Émetteur de développement" in page.content(), "the console sends to the issuer's sign-in page")
    page.screenshot(path=os.path.join(SHOTS, "01-issuer-sign-in.png"), full_page=True)
    page.click("button[value=operateur]")
    page.wait_for_selector("h1:has-text('Politique d')")
    auditor_context = browser.new_context(
        ignore_https_errors=True, bypass_csp=True, storage_state=context.storage_state()
    )
    auditor = auditor_context.new_page()
    shot(page, auditor, "02-policy-in-force")

    # A new version with a mistake: shown at its file and line.
    page.click("nav >> text=Nouvelle version")
    page.wait_for_selector("h1:has-text('Nouvelle version')")
    shot(page, auditor, "03-new-version")
    rules = page.input_value("textarea[name='policy.csv']")
    fixed = rules.replace("g, projet-emploi, profil-recherche-sante\n", "")
    expect(fixed != rules, "the demo policy grants projet-emploi its profile")
    broken = fixed + "p, projet-emploi, sante.sejours, poids, read, allow, clear\n"
    page.fill("#comment", "Fin de l'accès du projet emploi")
    page.fill("textarea[name='policy.csv']", broken)
    page.click("button:has-text('Valider')")
    page.wait_for_selector("#problemes")
    line = len(fixed.splitlines()) + 1
    expect(f"policy.csv:{line}" in page.inner_text("#problemes"), f"the mistake is named at policy.csv:{line}")
    expect(page.get_attribute("textarea[name='policy.csv']", "aria-invalid") == "true", "the file's field is marked invalid")
    shot(page, auditor, "04-mistake-at-its-line")

    # Fixed: stored, with the access delta.
    page.fill("textarea[name='policy.csv']", fixed)
    page.click("button:has-text('Valider')")
    page.wait_for_selector("h2:has-text('Écart')")
    delta = page.inner_text("table")
    expect("projet-emploi" in delta and "perd" in delta and "dataset sante.sejours" in delta, f"the delta shows the loss: {delta}")
    shot(page, auditor, "05-dry-run-access-delta")
    number = int(re.search(r"/console/versions/(\d+)/vigueur", page.content()).group(1))

    # Apply, confirmed.
    page.check("#confirmer")
    page.click("button:has-text('Mettre en vigueur')")
    page.wait_for_selector(f"h1:has-text('Version {number} en vigueur')")
    shot(page, auditor, "06-applied")

    # Roll back from the history.
    page.click("nav >> text=Historique")
    page.wait_for_selector("h1:has-text('Historique')")
    shot(page, auditor, "07-history")
    page.click(f"a[href='/console/versions/{number - 1}']")
    page.wait_for_selector("h2:has-text('Écart')")
    expect("gagne" in page.inner_text("table"), "the rollback's delta gives the access back")
    shot(page, auditor, "08-rollback-preview")
    page.check("#confirmer")
    page.click("button:has-text('Mettre en vigueur')")
    page.wait_for_selector(f"h1:has-text('Version {number - 1} en vigueur')")
    shot(page, auditor, "09-rolled-back")

    # The habilitations, "who sees what" and the tables.
    page.click("nav >> text=Habilitations")
    page.wait_for_selector("h1:has-text('Habilitations')")
    expect("échue" in page.inner_text("table"), "the expired habilitation is shown as such")
    shot(page, auditor, "13-habilitations")
    page.click("nav >> text=Qui voit quoi")
    page.wait_for_selector("h1:has-text('Qui voit quoi')")
    page.fill("#issuer", "demo")
    page.fill("#siret", "18003502400017")
    page.fill("#groups", "projet-diabete")
    page.click("button:has-text('Expliquer')")
    page.wait_for_selector("#explication")
    expect("sante.sejours" in page.inner_text("#explication"), "explain names the datasets")
    shot(page, auditor, "14-who-sees-what")
    page.click("nav >> text=Tableaux")
    page.wait_for_selector("h1:has-text('Tableaux')")
    shot(page, auditor, "15-tables")
    page.click("nav >> text=Audit")
    page.wait_for_selector("h1:has-text('Journal d')")
    page.select_option("#issue", "refused")
    page.click("button:has-text('Rechercher')")
    page.wait_for_selector("caption")
    expect("Chaîne vérifiée" in page.content(), "the trail verifies")
    shot(page, auditor, "16-audit-search")

    # Sign out.
    page.click("button:has-text('Se déconnecter')")
    page.wait_for_selector("h1:has-text('déconnecté')")
    shot(page, auditor, "10-signed-out")
    expect(not blocked, f"the pages load nothing their policy blocks: {blocked}")

    # A researcher is refused.
    researcher = browser.new_context(ignore_https_errors=True, locale="fr-FR").new_page()
    researcher.goto(BASE + "/console")
    researcher.click("button[value=chercheuse-diabete]")
    researcher.wait_for_selector("h1:has-text('Accès refusé')")
    shot(researcher, auditor, "11-researcher-refused")

    # A citizen reads their own journal (the test made the CAF look the record up first).
    citizen = browser.new_context(ignore_https_errors=True, locale="fr-FR").new_page()
    citizen.goto(BASE + "/moi")
    citizen.click("button[value=citoyen]")
    citizen.wait_for_selector("h1:has-text('Qui a consulté mes données')")
    expect("13000170500016" in citizen.inner_text("table"), "the CAF's lookup is in the journal")
    shot(citizen, auditor, "12-citizen-journal")
    browser.close()

print(json.dumps({"pages": checked}, ensure_ascii=False))
print(f"screenshots: {SHOTS}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
