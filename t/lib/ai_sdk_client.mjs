// One call of the Vercel AI SDK's default OpenAI model, openai(model) (the
// Responses API), through the gateway; prints what the application sees as
// one JSON line.  t/71-responses-clients.t copies it next to the
// node_modules it installed.
//
//   node ai_sdk_client.mjs text|stream|tools|stream-tools MODEL
//   TG_BASE_URL, TG_KEY: the gateway and the client key; TG_STORE=false
//   sends providerOptions.openai.store = false (items in full, no
//   item_reference).

import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';

const [mode, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: process.env.TG_BASE_URL,
                              apiKey: process.env.TG_KEY });
const providerOptions = process.env.TG_STORE === 'false'
                        ? { openai: { store: false } } : undefined;
const out = { errors: [] };

const tools = {
  get_weather: tool({
    description: 'The weather in a city',
    inputSchema: jsonSchema({ type: 'object',
                              properties: { city: { type: 'string' } },
                              required: ['city'],
                              additionalProperties: false }),
    execute: async ({ city }) => {
      out.executed = city;
      return { city, temp: 21 };
    },
  }),
};

const message = (e) => (e && (e.message || (e.error && e.error.message)))
                       || JSON.stringify(e);

try {
  if (mode === 'text') {
    const r = await generateText({ model: openai(model), prompt: 'Say hi',
                                   maxRetries: 0, providerOptions });
    Object.assign(out, { text: r.text, finishReason: r.finishReason,
                         usage: r.usage });

  } else if (mode === 'stream') {
    const r = streamText({ model: openai(model), prompt: 'Say hi',
                           maxRetries: 0, providerOptions,
                           onError: ({ error }) => out.errors.push(message(error)) });
    let text = '';
    for await (const part of r.fullStream) {
      if (part.type === 'text-delta') {
        text += part.text;
      }
    }
    out.text = text;
    out.finishReason = await r.finishReason;
    out.usage = await r.usage;

  } else if (mode === 'tools' || mode === 'stream-tools') {
    const options = { model: openai(model), prompt: 'Weather in Paris?',
                      tools, stopWhen: stepCountIs(3), maxRetries: 0,
                      providerOptions };
    const r = mode === 'tools'
              ? await generateText(options)
              : streamText({ ...options,
                             onError: ({ error }) => out.errors.push(message(error)) });
    if (mode === 'stream-tools') {
      for await (const part of r.fullStream) {
        if (part.type === 'error') {
          out.errors.push(message(part.error));
        }
      }
    }
    out.text = await r.text;
    out.steps = (await r.steps).map((s) => ({
      finishReason: s.finishReason,
      toolCalls: s.toolCalls.map((c) => ({ id: c.toolCallId,
                                           name: c.toolName,
                                           input: c.input })),
    }));
  }
} catch (e) {
  out.thrown = message(e);
}

console.log(JSON.stringify(out));
