/// Files that make up a tokenizer folder.
pub const TOKENIZER_FILES: [&str; 2] = ["vqvae.safetensors", "vqvae.json"];
