// Drives the web page of a running `muse serve` in headless Chromium, as a person would:
// pick the text model, generate, see tokens stream in, open a token's alternatives, continue
// from one; pick the image model (a VAE), draw, then walk its latent space; pick the diffusion
// model, draw with its denoising steps. Screenshots go to the folder given.
//
//   node check_page.mjs http://127.0.0.1:8391 TEXT_MODEL VAE_MODEL OUT_DIR [DIFFUSION_MODEL]
import puppeteer from "puppeteer-core";

const [url, textModel, imageModel, outDir, diffusionModel] = process.argv.slice(2);
const fail = (why) => { console.error("FAIL: " + why); process.exit(1); };

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 900 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url, { waitUntil: "networkidle0" });
  if (!(await page.content()).includes("AI-generated")) fail("no AI-generated notice");

  // Text: stream tokens.
  await page.select("#model", textModel);
  await page.$eval("#prompt", (e) => { e.value = "The cat sat on the"; });
  await page.$eval("#max-tokens", (e) => { e.value = "12"; });
  await page.click("#generate");
  await page.waitForFunction(() => document.querySelectorAll("#text-output .tok").length >= 3,
    { timeout: 60000 });
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("done"),
    { timeout: 60000 });
  const tokens = await page.$$eval("#text-output .tok", (s) => s.length);
  const label = await page.$eval("#text-output .ai-label", (e) => e.textContent);
  if (!label.includes("AI-generated")) fail("text output without the label");
  // Alternatives of the first token, then continue from the second likeliest.
  await page.click("#text-output .tok");
  await page.waitForSelector("#alternatives button");
  const alternatives = await page.$$eval("#alternatives button", (b) => b.map((x) => x.textContent));
  if (alternatives.length !== 5) fail("expected 5 alternatives, saw " + alternatives.length);
  await page.screenshot({ path: outDir + "/page-text.png" });
  const buttons = await page.$$("#alternatives button");
  await buttons[1].click();
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("done"),
    { timeout: 60000 });
  const prompt = await page.$eval("#prompt", (e) => e.value);
  if (!prompt.startsWith("The cat sat on the") || prompt.length <= 18) fail("continue did not extend the prompt: " + prompt);

  // Images.
  await page.select("#model", imageModel);
  await page.$eval("#image-prompt", (e) => { e.value = "a red sneaker"; });
  await page.click("#draw");
  await page.waitForSelector("#image-output img", { timeout: 120000 });
  const images = await page.$$eval("#image-output figure", (f) => f.map((x) => x.textContent));
  if (!images.length || !images.every((c) => c.includes("AI-generated"))) fail("images without the label");
  await page.screenshot({ path: outDir + "/page-image.png" });

  // The VAE's latent walk: six images from one seed's sample to the next seed's.
  const drawn = async (n) => {
    await page.click("#draw");
    await page.waitForFunction((n) => document.querySelector("#status").textContent === n + " image(s)",
      { timeout: 120000 }, n);
    const captions = await page.$$eval("#image-output figure", (f) => f.map((x) => x.textContent));
    if (captions.length !== n || !captions.every((c) => c.includes("AI-generated"))) {
      fail("expected " + n + " labelled images, saw " + JSON.stringify(captions));
    }
  };
  if (await page.$eval("#walk-box", (e) => e.hidden)) fail("no latent walk option for a VAE");
  await page.$eval("#walk", (e) => { e.checked = true; });
  await page.$eval("#n", (e) => { e.value = "6"; });
  await drawn(6);
  const stripShown = await page.$eval("#trajectory-output", (e) => getComputedStyle(e).display !== "none");
  if (stripShown) fail("a denoising strip box shows under VAE images");
  await page.screenshot({ path: outDir + "/page-walk.png" });

  // Diffusion: the images and, under them, the denoising strip.
  let strip = false;
  if (diffusionModel) {
    await page.select("#model", diffusionModel);
    if (await page.$eval("#trajectory-box", (e) => e.hidden)) fail("no denoising option for diffusion");
    if (!(await page.$eval("#walk-box", (e) => e.hidden))) fail("latent walk offered for diffusion");
    await page.$eval("#n", (e) => { e.value = "2"; });
    await page.$eval("#steps", (e) => { e.value = "10"; });
    await drawn(2);
    strip = await page.$eval("#trajectory-output", (e) =>
      !e.hidden && e.querySelector("img").naturalWidth > 0 && e.textContent.includes("AI-generated"));
    if (!strip) fail("no labelled denoising strip under the diffusion images");
    await page.screenshot({ path: outDir + "/page-diffusion.png" });
  }
  if (errors.length) fail("script errors: " + errors.join("; "));
  console.log(JSON.stringify({ tokens, alternatives, continued_prompt: prompt, images: images.length, walk: 6, strip }));
} finally {
  await browser.close();
}
