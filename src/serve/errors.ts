// Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with the HTTP status
// the official clients map to their typed errors (400 BadRequestError, 401 AuthenticationError,
// 404 NotFoundError, 413, 429 RateLimitError, 500 InternalServerError, 503).

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

/** An error a request handler throws to answer with `status` and OpenAI's error object. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the request parameter. */
export const badParam = (param: string, message: string, code: string | null = null): ApiError =>
  new ApiError(400, message, 'invalid_request_error', param, code);
