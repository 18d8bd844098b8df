"""The model ids this server answers to (CONTRACT.md): one model, spelled per surface."""

MODEL_ID = "pixverse-v6"  # job API and OpenAI form
CLOUDFLARE_MODEL_ID = "pixverse/v6"  # Cloudflare Workers AI form
