"""The station → center sync: wire, center ingest, uploader."""
