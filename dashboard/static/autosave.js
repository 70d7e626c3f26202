(function(){const doc=window.parent.document;let t=null;
function hook(){const ta=doc.querySelector('textarea[aria-label="Draft (editable)"]');
 if(!ta){setTimeout(hook,300);return;}
 if(ta.dataset.pwAutosave)return;ta.dataset.pwAutosave='1';
 ta.addEventListener('input',()=>{clearTimeout(t);t=setTimeout(()=>{
  fetch('/pw/api/draft/__ITEM_ID__',{method:'POST',credentials:'same-origin',headers:{'Content-Type':'application/json'},
   body:JSON.stringify({text:ta.value})}).then(r=>{window.parent.document.body.dataset.pwSaved=r.status;});},__DEBOUNCE_MS__);});}
hook();})();
