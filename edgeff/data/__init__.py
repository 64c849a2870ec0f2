"""Data: IDX files, dataset lookup and the FF label overlay. Imports nothing of the trainer or runtime."""
