"""Reading plate exports without torch: `wells` (A1 -> A01), `platemap` (plate-map CSV contract),
`formats` + `discover` (export naming -> fields), `index` (fields joined with the plate map), `images` (pixels).
"""
