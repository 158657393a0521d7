"""The GeoAware-SC family: Geo-SC, DIY-SC and Jamais Vu on one adapter and matcher."""
