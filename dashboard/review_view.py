"""The review page: the study's header and claim, the synced viewer, the findings, the draft
and the decision. It draws widgets and calls `dashboard.commands`, which decides and writes;
the viewer's and the autosave's HTML/JS are files in `dashboard/static/`.
"""

from __future__ import annotations

import html
import json
from datetime import timezone
from typing import Any

import streamlit as st

from dashboard import commands, history_view, images, queries, signoff
from dashboard.ui import PAGE_WORKLIST, flash, go, open_item, plural, show_flash, sid, static
from priorwatch.models import Instance, Study
from priorwatch.vocabulary import Change, FindingType, Side, Zone

# Plain-text marks (no emoji): they render on a reading-room workstation without emoji fonts.
GUARD_MARKS = {
    "supported": "✓ supported",
    "unsupported": "⚠ UNSUPPORTED",
    "unverified": "? unverified",
    None: "? unverified",
}
NONE_OPTION = "—"
MANUAL = "manual"
SHORTCUTS = {
    "accept": "Alt+A",
    "accept_edit": "Alt+E",
    "accept_next": "Alt+N",
    "reject": "Alt+J",
    "back": "Alt+W",
    "take_over": "Alt+T",
}
AUTOSAVE_DEBOUNCE_MS = 800  # typing pauses this long before the draft is saved
VIEWER_HEIGHT = 560  # the two panes and their toolbar
STRIP_HEIGHT = 122  # the history strip's tiles below them (thumbnail, date/view, role, L/R buttons)


# ---------------------------------------------------------------------------------------
# Widget state of one open review
# ---------------------------------------------------------------------------------------
def _state_keys(item_id: int, detail: queries.StudyDetail) -> dict[str, Any]:
    return {
        "draft": f"draft_{item_id}",
        "missed": f"missed_{item_id}",
        "wrong": {f.id: f"wrong_{item_id}_{f.id}" for f in detail.findings},
        "change": {f.id: f"chg_{item_id}_{f.id}" for f in detail.findings},
        "urgent": {f.id: f"urg_{item_id}_{f.id}" for f in detail.findings},
        "reason": f"reason_{item_id}",
    }


def _corrections(detail: queries.StudyDetail, keys: dict[str, Any]) -> commands.Corrections:
    """The reader's corrections as the widgets hold them."""
    ss = st.session_state
    wrong = frozenset(fid for fid, k in keys["wrong"].items() if ss.get(k))
    relabel: dict[int, dict[str, Any]] = {}
    for f in detail.findings:
        fix: dict[str, Any] = {}
        chg = ss.get(keys["change"][f.id], f.change)
        if chg != f.change:
            fix["change"] = chg
        urg = ss.get(keys["urgent"][f.id], bool(f.urgent))
        if urg != bool(f.urgent):
            fix["urgent"] = urg
        if fix:
            relabel[f.id] = fix  # type: ignore[index]
    return commands.Corrections(wrong, relabel, tuple(ss.get(keys["missed"], [])))


def _close_review(item_id: int, release: bool = True) -> None:
    user = st.session_state.get("user")
    if release and user:
        commands.release(item_id, user["username"])
    started = st.session_state.get("review_started", {})
    started.pop(item_id, None)
    for k in [k for k in st.session_state.keys() if isinstance(k, str) and (k.endswith(f"_{item_id}") or f"_{item_id}_" in k)]:
        del st.session_state[k]
    st.session_state.pop("review_item", None)


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------
def review_page(user: dict[str, Any]) -> None:
    item_id = st.session_state.get("review_item")
    if item_id is None:
        st.title("Review")
        show_flash()
        st.info("No study is open. Choose one on the worklist (click its row).")
        if st.button("Go to the worklist"):
            go(PAGE_WORKLIST)
            st.rerun()
        return
    started = st.session_state.setdefault("review_started", {})
    opened = commands.open_study(item_id, user["username"], sid(), already_open=item_id in started)
    if opened is None:
        st.title("Review")
        st.error("This worklist item no longer exists. It may have been removed; go back to the worklist.")
        if st.button("Back to worklist"):
            _close_review(item_id, release=False)
            go(PAGE_WORKLIST)
            st.rerun()
        return
    if opened.first_view:
        started[item_id] = commands.now()
    detail = opened.detail
    mine = _header(item_id, opened, user["username"])
    urgent = [f for f in detail.findings if f.urgent]
    if detail.comparison.urgent or urgent:
        st.error(
            "**URGENT** · "
            + (", ".join(f"{queries.finding_label(f)} — {f.change}" for f in urgent) or "flagged urgent by the model"),
            icon=":material/emergency:",
        )
    viewer_section(detail, opened.priors)
    findings_section(detail)
    if not detail.is_open:
        last = detail.reviews[-1] if detail.reviews else None
        if last:
            st.text_area("Signed report", last.final_text, disabled=True, height=160, key=f"final_{item_id}")
        return
    _decision_form(item_id, detail, user["username"], read_only=not mine)


def _header(item_id: int, opened: commands.OpenedStudy, username: str) -> bool:
    """Title, back button, who holds the claim (take over) or who signed; True if it is the caller's."""
    detail, claim, signoff = opened.detail, opened.claim, opened.signoff
    study = detail.study
    st.title(f"{study.patient_name or 'Unnamed patient'} · {queries.format_age_sex(study.patient_birth_date, study.study_date, study.patient_sex)}")
    show_flash()
    st.caption(
        f"Patient ID {study.patient_id} · accession {study.accession or '—'} · {queries.study_label(study)}"
        + (f" · site {study.institution}" if study.institution else "")
    )
    b1, b2 = st.columns([1, 4])
    if b1.button("← Back to worklist", key="back", shortcut=SHORTCUTS["back"]):
        _close_review(item_id)
        go(PAGE_WORKLIST)
        st.rerun()
    mine = claim is not None and claim.mine
    if detail.is_open and not mine:
        holder = claim.holder if claim else None
        since = f" since {claim.since:%H:%M} UTC" if claim and claim.since else ""
        b2.warning(f"Being read by **{holder or 'someone else'}**{since}. You see it read-only.", icon=":material/lock:")
        if b2.button("Take over this study", key=f"take_{item_id}", shortcut=SHORTCUTS["take_over"],
                     help=f"Move the study to you; {holder or 'the other reader'} can no longer sign it."):
            commands.take_over(item_id, username)
            st.rerun()
    elif mine:
        b2.caption(f"Claimed by you since {claim.since:%H:%M} UTC; others see it read-only.")  # type: ignore[union-attr]
    if detail.is_open and not mine:
        _watch_item(item_id)
    if not detail.is_open:
        last = detail.reviews[-1] if detail.reviews else None
        who = signoff.signer if signoff else (last.reviewer if last else None)
        when = signoff.signed_at if signoff else (last.finished_at if last else None)
        st.success(
            f"Signed: **{detail.item.status}**" + (f" by **{who}** at {when:%Y-%m-%d %H:%M:%S} UTC" if who and when else "")
            + ". The signed report is below the images.",
            icon=":material/verified:",
        )
    return mine


@st.fragment(run_every=2.0)
def _watch_item(item_id: int) -> None:
    """For a read-only viewer: redraw the page as soon as the reader signs (who, when)."""
    if commands.item_closed(item_id):
        st.rerun(scope="app")


# ---------------------------------------------------------------------------------------
# Viewer
# ---------------------------------------------------------------------------------------
def viewer_section(detail: queries.StudyDetail, priors: list[tuple[Study, Instance]]) -> None:
    comp, prior = detail.comparison, detail.prior
    if prior is not None:
        st.markdown(f"**Prior:** {queries.study_label(prior)} · interval {queries.format_interval(comp.interval_days)}")
    else:
        st.markdown(f"**No prior** for comparison{': ' + comp.no_prior_reason if comp.no_prior_reason else ''}.")
    st.caption(
        f"Draft by {comp.engine or 'engine'} {comp.engine_version} · model {comp.model or '—'} {comp.model_version}"
        + (" · fallback engine" if comp.fallback else "")
        + ("" if comp.structured else " · model output could not be parsed into findings")
        + " · AI output is a draft: you decide."
    )
    cur = detail.current_instance
    c1, c2, c3, c4 = st.columns([3.2, 1.3, 1.3, 2.2])
    preset = c1.radio("Window / level", [*images.PRESETS, MANUAL], horizontal=True, key="wl_preset",
                      format_func=str.capitalize)
    show_overlay = c2.toggle(
        "Difference overlay", key="overlay", disabled=not comp.overlay_path,
        help="The registered difference heat-map on the current image." if comp.overlay_path else "This result has no overlay.",
    )
    full = c3.toggle("Full resolution", key="full_res", help="Serve the images at their acquired size (slower).")
    prior_options = {p.id: inst for p, inst in priors}
    prior_pick = _prior_picker(c4, detail, priors, prior_options)
    center, width = _manual_window(cur) if preset == MANUAL else (None, None)
    wl_preset = preset if preset != MANUAL else "default"
    cur_url = images.image_url(cur.id, preset=wl_preset, center=center, width=width, full=full,  # type: ignore[arg-type]
                               overlay=comp.id if show_overlay and comp.overlay_path else None) if cur else None
    pr_inst = prior_options.get(prior_pick) if prior_pick is not None else None
    pr_url = images.image_url(pr_inst.id, preset=wl_preset, center=center, width=width, full=full) if pr_inst else None  # type: ignore[arg-type]
    markers = {}
    for name, inst in (("cur", cur), ("pr", pr_inst)):
        try:
            markers[name] = images.load_cached(inst.path).markers if inst else ("", "")
        except images.ImageUnavailable as exc:
            markers[name] = ("", "")
            st.warning(f"{'Current' if name == 'cur' else 'Prior'} image unavailable: {exc}", icon=":material/broken_image:")
    cur_cap = f"Current · {detail.study.study_date or ''} {cur.view_position if cur else ''}"
    pr_study = next((p for p, _ in priors if p.id == prior_pick), None)
    pr_cap = f"Prior · {pr_study.study_date or ''} {pr_inst.view_position if pr_inst else ''}" if pr_study else "No prior study"
    started = st.session_state.get("review_started", {}).get(detail.item.id)
    started_ms = int(started.replace(tzinfo=timezone.utc).timestamp() * 1000) if started else None
    strip = _strip(detail, priors, cur_url, lambda i: images.image_url(i.id, preset=wl_preset, center=center,  # type: ignore[arg-type]
                                                                       width=width, full=full))
    sel = (len(strip) - 1, next((k for k, s in enumerate(strip) if s.study_id == prior_pick), -1))
    st.iframe(viewer_html(cur_url, pr_url, cur_cap, pr_cap, markers["cur"], markers["pr"], started_ms, strip, sel),
              height=VIEWER_HEIGHT + (STRIP_HEIGHT if strip else 0))
    st.caption("Viewer: wheel or +/− zooms both images, drag pans both, double-click or Reset fits. "
               + ("History strip: L or R under a study shows it in that pane, at the same zoom, pan and window. "
                  if strip else "")
               + "Window/level is applied on the server to the full-depth pixel data.")


def _strip(detail: queries.StudyDetail, priors: list[tuple[Study, Instance]], cur_url: str | None,
           url: Any) -> list[history_view.StripStudy]:
    """The history strip's studies (oldest first, the current last); none when there is no earlier study."""
    if not priors:
        return []

    def markers(inst: Instance) -> tuple[str, str]:
        try:
            return images.load_cached(inst.path).markers
        except images.ImageUnavailable:
            return ("", "")

    return history_view.strip_studies(detail.study, detail.current_instance, priors, detail.comparison,
                                      lambda inst, is_cur: cur_url if is_cur and cur_url else url(inst), markers)


def _prior_picker(col: Any, detail: queries.StudyDetail, priors: list[tuple[Study, Instance]],
                  prior_options: dict[Any, Instance]) -> Any:
    """Which of the patient's earlier studies the right pane shows (the compared prior first)."""
    if not priors:
        return None
    prior = detail.prior
    labels = {p.id: f"{p.study_date or 'date unknown'} · {p.modality} {p.description or p.body_part}" for p, _ in priors}
    default_prior = prior.id if prior is not None and prior.id in prior_options else priors[0][0].id
    key = f"prior_pick_{detail.item.id}"
    if st.session_state.get(key) not in prior_options:
        st.session_state[key] = default_prior
    return col.selectbox(f"Prior ({plural(len(priors), 'study', 'studies')} of this patient)",
                         list(prior_options), format_func=lambda i: labels[i], key=key)


def _manual_window(cur: Instance | None) -> tuple[float | None, float | None]:
    """Center and width sliders over the current image's full-depth range."""
    if cur is None:
        st.warning("No current image to window.")
        return None, None
    try:
        img = images.load_cached(cur.path)
        lo, hi = images.window_range(img)
        d_lo, d_hi = images.window_bounds(img, "default")
    except images.ImageUnavailable as exc:
        st.warning(f"Current image unavailable: {exc}")
        return None, None
    m1, m2 = st.columns(2)
    center = m1.slider("Window center", float(lo), float(hi), float((d_lo + d_hi) / 2), key="wl_center")
    width = m2.slider("Window width", 1.0, float(hi - lo) * 2, float(max(d_hi - d_lo, 1.0)), key="wl_width")
    return center, width


def viewer_html(cur_url: str | None, pr_url: str | None, cur_cap: str, pr_cap: str,
                cur_markers: tuple[str, str], pr_markers: tuple[str, str], started_ms: int | None = None,
                strip: list[history_view.StripStudy] | None = None, sel: tuple[int, int] = (-1, -1)) -> str:
    """Two panes with zoom and pan kept in step (`static/viewer.html`, images from the session route),
    under the history strip (`strip`, with the tiles now in the left and right pane: `sel`)."""
    def pane(idx: int, url: str | None, cap: str, mk: tuple[str, str]) -> str:
        img = (f'<img id="im{idx}" src="{html.escape(url)}" draggable="false" alt="{html.escape(cap)}">' if url
               else '<div class="none">No image</div>')
        return (f'<div class="pane" id="p{idx}"><div class="cap">{html.escape(cap)}</div>{img}'
                f'<div class="mk l">{html.escape(mk[0])}</div><div class="mk r">{html.escape(mk[1])}</div></div>')

    return (static("viewer.html")
            .replace("__PANES__", pane(0, cur_url, cur_cap, cur_markers) + pane(1, pr_url, pr_cap, pr_markers), 1)
            .replace("__ZOOM_KEY__", json.dumps("pw_view_zoom:" + (cur_url or "").split("?")[0]), 1)
            .replace("__STARTED_MS__", json.dumps(started_ms), 1)
            .replace("__STRIP__", history_view.strip_html(strip) if strip else "", 1)
            .replace("__STRIP_DATA__", history_view.strip_json(strip or []), 1)
            .replace("__STRIP_SEL__", json.dumps(list(sel)), 1))


# ---------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------
def findings_section(detail: queries.StudyDetail) -> None:
    st.subheader("Findings")
    if not detail.findings:
        st.info("The model reported no findings.")
    else:
        st.dataframe(
            [
                {
                    "Finding": f.finding.replace("_", " "),
                    "Side": f.side or "",
                    "Zone": f.zone or "",
                    "Change": f.change,
                    "Urgent": "URGENT" if f.urgent else "",
                    "Confidence": round(f.confidence, 2),
                    "Evidence check": GUARD_MARKS.get(f.guard, f.guard or ""),
                    "Sizes over time": history_view.sizes_text(f),
                    "Trend": history_view.sizes_series(f),
                    "First seen": str(f.first_seen or ""),
                }
                for f in detail.findings
            ],
            hide_index=True,
            width="stretch",
            column_config={
                "Confidence": st.column_config.ProgressColumn("Confidence", min_value=0.0, max_value=1.0, format="%.2f"),
                "Trend": st.column_config.LineChartColumn("Trend", y_min=0, width="small",
                                                          help="Size (mm) on each study, oldest first; 0 = not seen"),
            },
        )
        _sizes_chart(detail)
        unsupported = [f for f in detail.findings if f.guard == "unsupported"]
        if unsupported:
            st.warning(
                f"{len(unsupported)} claim(s) are not supported by the image evidence: "
                + ", ".join(queries.finding_label(f) for f in unsupported)
                + ". Check them before accepting."
            )
        st.caption("Evidence check: ✓ supported by the image evidence · ⚠ unsupported · ? unverified (could not be checked).")
    with st.expander("Prior report", expanded=bool(detail.prior_report)):
        if detail.prior_report:
            st.text(detail.prior_report)
        else:
            st.caption("No prior report on file.")


def _sizes_chart(detail: queries.StudyDetail) -> None:
    """Each measured finding's size against the study date (the history's trajectory)."""
    rows = history_view.chart_rows(detail.findings, queries.finding_label)
    if not rows:
        return
    import altair as alt

    chart = (alt.Chart(alt.Data(values=rows)).mark_line(point=True)
             .encode(x=alt.X("date:T", title="study date"), y=alt.Y("size (mm):Q", title="size (mm)"),
                     color=alt.Color("finding:N", title=None, scale=alt.Scale(scheme="category10")),
                     tooltip=["finding:N", "date:T", "size (mm):Q"])
             .properties(height=180))
    st.altair_chart(chart, width="stretch")
    for f in detail.findings:
        if f.trajectory:
            st.markdown(f"**{queries.finding_label(f)}:** {f.trajectory}")
    st.caption("Sizes over time: 0 mm = looked for and not seen; n/a = not assessable on that study.")


# ---------------------------------------------------------------------------------------
# Draft and decision
# ---------------------------------------------------------------------------------------
def _save_draft_cb(item_id: int, username: str, key: str) -> None:
    commands.save_draft(username, item_id, st.session_state.get(key, ""))


def _regenerate_cb(item_id: int, detail: queries.StudyDetail, keys: dict[str, Any], username: str) -> None:
    st.session_state[keys["draft"]] = commands.rewritten_text(detail, _corrections(detail, keys))
    _save_draft_cb(item_id, username, keys["draft"])


def autosave_js(item_id: int) -> str:
    """Saves the draft text area while the user types (a reload then restores it)."""
    js = static("autosave.js").replace("__ITEM_ID__", str(int(item_id)), 1)
    return "<script>\n" + js.replace("__DEBOUNCE_MS__", str(AUTOSAVE_DEBOUNCE_MS), 1) + "\n</script>"


def _draft_box(item_id: int, detail: queries.StudyDetail, keys: dict[str, Any], username: str, read_only: bool) -> str | None:
    """The draft text area, restored from the user's autosave; None when read-only."""
    comp = detail.comparison
    st.subheader("Draft report")
    line = history_view.history_line(comp)
    if line:
        st.caption(line)
    if keys["draft"] not in st.session_state and not read_only:
        saved = commands.load_draft(username, item_id)
        st.session_state[keys["draft"]] = saved[0] if saved is not None else comp.draft_text
        if saved is not None and saved[0] != comp.draft_text:
            st.info(f"Your unsaved draft from {saved[1]:%H:%M:%S} UTC was restored.", icon=":material/restore:")
    if read_only:
        st.text_area("Draft (read-only)", value=comp.draft_text, height=180, disabled=True, key=f"ro_{item_id}")
        return None
    text = st.text_area(
        "Draft (editable)", height=180, key=keys["draft"], on_change=_save_draft_cb,
        args=(item_id, username, keys["draft"]),
        help="Your edits are saved as you type and restored after a reload. Ctrl+Enter applies the edit.",
    )
    st.html(autosave_js(item_id), unsafe_allow_javascript=True)
    return text


def _corrections_expander(item_id: int, detail: queries.StudyDetail, keys: dict[str, Any], username: str) -> None:
    """Per-finding corrections, missed findings, and the rewrite button."""
    with st.expander("Finding corrections (optional)"):
        for f in detail.findings:
            cc = st.columns([3, 1, 2, 1])
            cc[0].markdown(f"**{queries.finding_label(f)}** · {f.change}" + (" · urgent" if f.urgent else ""))
            cc[1].checkbox("Wrong", key=keys["wrong"][f.id], help="The finding is not there: drop it.")
            changes = [c.value for c in Change]
            cc[2].selectbox("Change", changes, index=changes.index(f.change) if f.change in changes else 0, key=keys["change"][f.id])
            cc[3].checkbox("Urgent", value=bool(f.urgent), key=keys["urgent"][f.id])
        st.markdown("**Missed finding**")
        mc = st.columns(5)
        m_finding = mc[0].selectbox("Finding", [x.value for x in FindingType], key=f"m_finding_{item_id}")
        m_side = mc[1].selectbox("Side", [NONE_OPTION] + [x.value for x in Side], key=f"m_side_{item_id}")
        m_zone = mc[2].selectbox("Zone", [NONE_OPTION] + [x.value for x in Zone], key=f"m_zone_{item_id}")
        m_change = mc[3].selectbox("Change", [x.value for x in Change], key=f"m_change_{item_id}")
        m_urgent = mc[4].checkbox("Urgent", key=f"m_urgent_{item_id}")
        if st.button("Add missed finding", key=f"m_add_{item_id}"):
            st.session_state.setdefault(keys["missed"], []).append(
                {
                    "finding": m_finding,
                    "side": None if m_side == NONE_OPTION else m_side,
                    "zone": None if m_zone == NONE_OPTION else m_zone,
                    "change": m_change,
                    "urgent": bool(m_urgent),
                }
            )
        for i, m in enumerate(list(st.session_state.get(keys["missed"], []))):
            rc = st.columns([5, 1])
            rc[0].markdown(f"+ missed: {queries.finding_label(m)} · {m['change']}" + (" · urgent" if m["urgent"] else ""))
            if rc[1].button("Remove", key=f"m_rm_{item_id}_{i}"):
                st.session_state[keys["missed"]].pop(i)
                st.rerun()
        st.button("Rewrite the draft from the corrected findings", key=f"regen_{item_id}",
                  on_click=_regenerate_cb, args=(item_id, detail, keys, username),
                  help="Replaces the text above with sentences generated from the findings as corrected.")


def _decision_buttons(item_id: int, keys: dict[str, Any]) -> tuple[str | None, str]:
    """The four decisions and the rejection reason: (the button pressed or None, reason)."""
    st.subheader("Decision")
    a1, a2, a3 = st.columns(3)
    pressed = {
        commands.ACCEPT: a1.button("Accept as is", type="primary", key=f"accept_{item_id}", shortcut=SHORTCUTS["accept"]),
        commands.ACCEPT_EDIT: a2.button("Accept with edits", key=f"accept_edit_{item_id}", shortcut=SHORTCUTS["accept_edit"]),
        commands.ACCEPT_NEXT: a3.button("Accept and next", key=f"accept_next_{item_id}", shortcut=SHORTCUTS["accept_next"],
                                        help="Sign (as is, or with your edits) and open the next study on the worklist."),
    }
    r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
    reason = r1.text_input("Reason for rejection", key=keys["reason"], placeholder="e.g. wrong prior, finding not present, poor image quality")
    pressed[commands.REJECT] = r2.button("Reject", key=f"reject_{item_id}", shortcut=SHORTCUTS["reject"])
    with st.expander("Keyboard shortcuts"):
        st.markdown(
            f"- **{SHORTCUTS['accept']}** accept as is · **{SHORTCUTS['accept_edit']}** accept with edits · "
            f"**{SHORTCUTS['accept_next']}** accept and open the next study\n"
            f"- **{SHORTCUTS['reject']}** reject (give a reason first) · **{SHORTCUTS['back']}** back to the worklist · "
            f"**{SHORTCUTS['take_over']}** take over a study someone else is reading\n"
            "- Viewer: mouse wheel zooms both images, drag pans both, double-click resets."
        )
    return next((b for b, on in pressed.items() if on), None), reason


def _decision_form(item_id: int, detail: queries.StudyDetail, username: str, read_only: bool = False) -> None:
    keys = _state_keys(item_id, detail)
    text = _draft_box(item_id, detail, keys, username, read_only)
    if text is None:
        return
    _corrections_expander(item_id, detail, keys, username)
    corrections = _corrections(detail, keys)
    text_changed = text != detail.comparison.draft_text
    if corrections.any and not text_changed:
        st.warning("The findings were corrected but the text still says what the AI wrote. "
                   "Signing rewrites the text from the corrected findings; or use **Rewrite the draft** to see it first.")
    button, reason = _decision_buttons(item_id, keys)
    if button is None:
        return
    action, refusal = commands.choose_action(button, text_changed=text_changed, labels_changed=corrections.any, reason=reason)
    if action is None:
        st.error(refusal)
        return
    try:
        review_id = commands.sign(item_id, detail, username, action, text, corrections, reason=reason,
                                  started_at=st.session_state.get("review_started", {}).get(item_id), session_id=sid())
    except signoff.AlreadySigned as exc:
        st.session_state["flash"] = ("error", str(exc))
        st.rerun()
    except queries.ReviewError as exc:
        st.error(str(exc))
        return
    msg = f"Signed ({action}) {detail.study.accession or detail.study.study_uid} as {username}. Review #{review_id}."
    _close_review(item_id, release=False)
    nxt = commands.next_item(username, item_id) if button == commands.ACCEPT_NEXT else None
    flash(msg + (" Next study opened." if nxt else ""))
    if nxt is not None:
        open_item(nxt)
    else:
        go(PAGE_WORKLIST)
    st.rerun()
