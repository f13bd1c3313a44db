"""Live: upload pictures (or pick bank images) and watch the cascade in view answer them, stage by stage,
on the real models. Inference is core.live (the same code as `cascade-explorer predict`)."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from cascade_explorer.core import images, live
from cascade_explorer.dashboard import data, live_view, resolve, state, ui

bank = data.current_bank()
view = state.current()
bank_key = data.key(bank)
resolved = resolve.resolve(bank, view)   # the one cascade of this run (the Explorer's)
split, models, thresholds = resolved.split, resolved.models, resolved.thresholds

st.title("Live")
st.caption("Upload a picture and watch the cascade answer it: the cheapest model looks first; if it is "
           "confident enough its answer is final, otherwise the picture goes to the next model. Every number "
           "here is measured now, on this machine, with the real models.")

chain = ui.md(ui.chain_text(bank, models))
thr = ", ".join(live_view.fmt_threshold(t) for t in thresholds) or "none (one model)"
st.markdown(f"**Cascade:** {chain}  \n**Criterion:** {ui.CRITERION_NAMES.get(view.criterion, view.criterion)} · "
            f"**thresholds:** {thr} · **temperature:** {'fitted' if view.temperature == 'fit' else 'none'} · "
            f"**ensemble:** {'on' if view.ensemble else 'off'}")
st.caption("This is the cascade set in the Explorer (or the headline cascade); change it there and come back.")
if resolved.fit_error:
    st.warning(f"No thresholds meet the Explorer's target: {ui.md(resolved.fit_error)}. Running with the hand-set "
               "thresholds instead; relax the target in the Explorer.", icon=":material/warning:")

no_spec = [m for m in models if not bank.model(m).spec]
cascade = None
if no_spec:
    st.warning(f"{', '.join(ui.md(bank.model(m).display_name) for m in no_spec)} came into this bank as stored outputs "
               "only (no model file or weights are recorded), so it cannot run on new pictures. Pick a chain of "
               "models built with `cascade-explorer precompute` in the Explorer.", icon=":material/block:")
else:
    temps = (live_view.fitted_temperatures(bank_key, split, models) if view.temperature == "fit"
             else [1.0] * len(models))
    cascade = live.Cascade.from_bank(bank, models, view.criterion, thresholds, temperatures=temps,
                                     ensemble=view.ensemble)
    problem = live_view.load_models(cascade)
    if problem is not None:
        st.error(f"The models cannot be loaded on this machine: {ui.md(problem)}", icon=":material/error:")
        st.caption("Missing weights: set `CASCADE_EXPLORER_MODELS` to a folder holding the model files "
                   "(e.g. `../shared/models/tflite`) and restart. Missing backend: "
                   "`pip install 'cascade-explorer[tflite,lite]'` installs every backend of the default bank.")
        cascade = None

if cascade is not None:
    key = live_view.cascade_key(cascade)
    tab_upload, tab_sample = st.tabs(["Upload pictures", "Bank images"])
    # (item key, name, read bytes, true label or None, stored-logits rows or None, formats decoded)
    items = []
    with tab_upload:
        uploads = st.file_uploader(
            "Pictures", type=list(live.UPLOAD_TYPES), accept_multiple_files=True, key="live_upload",
            max_upload_size=live.MAX_UPLOAD_BYTES // (1024 * 1024),
            help="JPEG, PNG, WebP, BMP or GIF (first frame), up to 25 MB each. Transparent areas count as white; "
                 "phone photos are turned upright from their EXIF orientation.")
        for upload in uploads or []:
            items.append((f"upload:{upload.file_id}", upload.name, upload.getvalue, None, None, live.UPLOAD_FORMATS))
    with tab_sample:
        sample_split = live_view.sample_split(bank, split)
        rows = live_view.local_sample_rows(bank_key, sample_split) if sample_split else []
        if not sample_split:
            st.info("This bank's image sets are all transformed (e.g. corrupted), so there is no plain bank "
                    "image to run; upload a picture instead.")
        elif not rows:
            st.info("The bank's images are not on this machine. Set `CASCADE_EXPLORER_IMAGES` to a folder "
                    "holding them (for the default bank: `../shared/data/imagenet-val-1300/data`) and restart, "
                    "or upload a picture instead.", icon=":material/image_not_supported:")
        else:
            labels = bank.labels(sample_split)
            picked = st.selectbox(
                "Bank image", options=[r for r, _ in rows], index=None, key="live_sample",
                placeholder="Choose an image of the bank...",
                format_func=lambda r: f"#{r} — true label: {ui.plain(bank.class_names[int(labels[r])], 200)}",
                help=f"Images of the '{ui.md(sample_split)}' set found on this machine. The page also compares the "
                     "live outputs with the ones stored in the bank.")
            if picked is not None:
                path = dict(rows)[picked]
                stored = [np.asarray(bank.logits(m, sample_split)[picked]) if bank.has_logits(m, sample_split)
                          else None for m in models]
                # a bank image: a local file (stat'ed before it is read), in any format precompute decodes
                items.append((f"sample:{sample_split}:{picked}", path.name, partial(images.read_image_file, path),
                              bank.class_names[int(labels[picked])], stored, images.IMAGE_FORMATS))
            if sample_split != split:
                st.caption(f"Bank images come from the plain '{ui.md(sample_split)}' set; the '{ui.md(split)}' set's "
                           "transformed pictures are not stored.")

    live_view.forget_except({item[0] for item in items})
    for item_key, name, read, truth, stored, formats in items:
        result = live_view.run_item(cascade, key, item_key, name, read, formats=formats)
        with st.container(border=True):
            if result.error is not None:
                st.error(ui.md(result.error), icon=":material/broken_image:")
                continue
            picture, trace_col = st.columns([1, 2.4], gap="large")
            picture.image(result.image, caption=ui.md(name, 200), width="stretch")
            with trace_col:
                live_view.render_trace(result.trace, truth=truth, stored=stored)

    st.subheader("This session")
    live_view.render_totals(live_view.session_totals(key, len(models)),
                            [ui.md(bank.model(m).display_name, 200) for m in models])
    if st.session_state.get(live_view.TOTALS_KEY, {}).get(key):
        if st.button("Reset the totals", key="live_reset"):
            st.session_state[live_view.TOTALS_KEY].pop(key, None)
            st.rerun()
