"""Live inference (placeholder until the live-inference page lands)."""

import streamlit as st

st.title("Live")
st.info("Live inference: coming. Upload a picture and watch the cascade answer stage by stage.")
