"""From a corpus to batches of token ids: corpora (files, Hugging Face Hub ids, corpus cards, the
built-in corpus; stored or streamed, one resolver and one hold-out rule), tokenizers, token ids
cached on disk, and the batchers that read them.

May import: `hardware` and the top of textlstm.
"""
