// REST errors as Azure Web PubSub sends them: an `ErrorDetail` JSON body and the code repeated in
// `x-ms-error-code` (the SDK surfaces `body.code` as RestError.code). Never a stack trace.
import type { FastifyReply } from 'fastify';

/** Reply `status` with `{ code, message }` and `x-ms-error-code`. HEAD replies carry no body. */
export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  reply.code(status).header('x-ms-error-code', code);
  if (reply.request.method === 'HEAD') return reply.send();
  return reply.type('application/json; charset=utf-8').send({ code, message });
}
