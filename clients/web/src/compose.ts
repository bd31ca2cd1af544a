// Writing a tweet or a reply: text, up to four pictures uploaded as soon as they are picked (each
// with its progress bar, removable until the tweet is posted), Ctrl+Enter or the button to post.
import { chirp, type Id, type Tweet } from "./api";
import { h, uid } from "./dom";
import { clearError, errorBox, showError } from "./app";

export const MAX_CHARS = 280;
export const MAX_PICTURES = 4;
const PICTURE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"];

interface Picture {
  file: File;
  preview: string;
  row: HTMLLIElement;
  upload: Promise<Id>;
  controller: AbortController;
}

export interface ComposeOptions {
  replyTo?: Id;
  label: string;
  placeholder: string;
  submitLabel: string;
  onPosted: (tweet: Tweet) => void;
  autofocus?: boolean;
}

function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Code points, as the tweets service counts them. */
export function length(text: string): number {
  return [...text].length;
}

export function composer(options: ComposeOptions): HTMLFormElement {
  const textId = uid("compose-text");
  const counterId = uid("compose-count");
  const pictures: Picture[] = [];
  const text = h("textarea", {
    id: textId,
    name: "content",
    rows: 3,
    placeholder: options.placeholder,
    "aria-describedby": counterId,
  });
  const counter = h("span", { id: counterId, class: "counter", "aria-live": "polite" });
  const list = h("ul", { class: "attachments", "aria-label": "Pictures to post" });
  const fileInput = h("input", {
    type: "file",
    accept: PICTURE_TYPES.join(","),
    multiple: true,
    class: "file-input",
  });
  const fileLabel = h("label", { class: "file-button button secondary" }, fileInput, "Add pictures");
  const submit = h("button", { type: "submit", class: "primary" }, options.submitLabel);
  const error = errorBox();
  const form = h(
    "form",
    { class: "compose", "aria-label": options.label },
    h("label", { for: textId, class: "visually-hidden" }, options.label),
    text,
    list,
    error,
    h("div", { class: "compose-bar" }, fileLabel, counter, submit),
  );
  let posting = false;
  // One key per draft: posting again after a lost answer returns the tweet instead of a second one.
  let idempotencyKey = newKey();

  const update = () => {
    const left = MAX_CHARS - length(text.value);
    counter.textContent = left < 0 ? `${-left} too many` : `${left} left`;
    counter.classList.toggle("over", left < 0);
    fileLabel.classList.toggle("disabled", pictures.length >= MAX_PICTURES);
    fileInput.disabled = pictures.length >= MAX_PICTURES || posting;
    const empty = !text.value.trim() && pictures.length === 0;
    submit.disabled = posting || empty || left < 0;
  };

  const remove = (picture: Picture) => {
    picture.controller.abort();
    URL.revokeObjectURL(picture.preview);
    picture.row.remove();
    pictures.splice(pictures.indexOf(picture), 1);
    pictures.forEach((p, index) => relabel(p, index));
    update();
    fileInput.focus();
  };

  const relabel = (picture: Picture, index: number) => {
    const name = `picture ${index + 1} (${picture.file.name})`;
    picture.row.querySelector("img")!.alt = `Picture ${index + 1} to post: ${picture.file.name}`;
    picture.row.querySelector("button")!.setAttribute("aria-label", `Remove ${name}`);
    picture.row.querySelector("progress")!.setAttribute("aria-label", `Uploading ${name}`);
  };

  const add = (file: File) => {
    const preview = URL.createObjectURL(file);
    const progress = h("progress", { max: 100, value: 0 });
    const status = h("span", { class: "upload-status" }, "Uploading…");
    const controller = new AbortController();
    const row = h(
      "li",
      { class: "attachment" },
      h("img", { src: preview, alt: "" }),
      h("div", { class: "upload" }, progress, status),
      h("button", { type: "button", class: "remove", title: "Remove" }, "✕"),
    );
    const picture: Picture = {
      file,
      preview,
      row,
      controller,
      upload: chirp.uploadMedia(file, file.type, {
        signal: controller.signal,
        onProgress: (sent, total) => {
          progress.value = total ? Math.round((sent / total) * 100) : 0;
        },
      }),
    };
    row.querySelector("button")!.addEventListener("click", () => remove(picture));
    picture.upload.then(
      () => {
        progress.value = 100;
        status.textContent = "Uploaded";
        row.classList.add("done");
      },
      (failure: unknown) => {
        if (controller.signal.aborted) return;
        row.classList.add("failed");
        status.textContent = "Upload failed";
        showError(error, failure);
      },
    );
    pictures.push(picture);
    list.append(row);
    relabel(picture, pictures.length - 1);
  };

  fileInput.addEventListener("change", () => {
    clearError(error);
    const files = [...(fileInput.files ?? [])];
    fileInput.value = "";
    const room = MAX_PICTURES - pictures.length;
    for (const file of files.slice(0, room)) {
      if (!PICTURE_TYPES.includes(file.type)) {
        error.textContent = `${file.name} is not a JPEG, PNG, GIF or WebP picture.`;
        error.hidden = false;
        continue;
      }
      add(file);
    }
    if (files.length > room) {
      error.textContent = `A tweet has at most ${MAX_PICTURES} pictures.`;
      error.hidden = false;
    }
    update();
  });

  text.addEventListener("input", update);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    clearError(error);
    posting = true;
    submit.textContent = "Posting…";
    update();
    try {
      const mediaIds = await Promise.all(pictures.map((picture) => picture.upload));
      const tweet = await chirp.postTweet(text.value, { replyTo: options.replyTo, mediaIds, idempotencyKey });
      idempotencyKey = newKey();
      text.value = "";
      for (const picture of [...pictures]) {
        URL.revokeObjectURL(picture.preview);
        picture.row.remove();
      }
      pictures.length = 0;
      options.onPosted(tweet);
    } catch (failure) {
      showError(error, failure);
    } finally {
      posting = false;
      submit.textContent = options.submitLabel;
      update();
    }
  });

  update();
  if (options.autofocus) queueMicrotask(() => text.focus());
  return form;
}
