"""The orchestration forms: each one starts a run per upload and chains crawl, clean and load."""
