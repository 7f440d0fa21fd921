//! Anthropic's Messages API as clients speak it (`POST /v1/messages`): parsed here, translated
//! to the gateway's OpenAI-shaped request, and the answer translated back.
