"""rlhf: the ChatGPT training recipe (pretrain, SFT, reward model, PPO, moderated answering) on the
Hugging Face stack."""

__version__ = "0.1.0"
